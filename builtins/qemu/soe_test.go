package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// TestSOEDiskPlanThroughTheDriver evaluates scripts/soe.star with
// source=disk in a copy of the project and hands its plan to the driver:
// the image resolves its paths from the project root, its provisioning
// tasks (the ops_user role on the build host) are part of its inputs, and
// without an SSH provisioner the build stops before anything starts.
func TestSOEDiskPlanThroughTheDriver(t *testing.T) {
	root := t.TempDir()
	for _, dir := range []string{".git", "scripts/keys", "build"} {
		os.MkdirAll(filepath.Join(root, dir), 0o755)
	}
	for _, f := range []string{"scripts/soe.star", "scripts/keys/ops.pub"} {
		data, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(root, f), data, 0o644)
	}
	os.WriteFile(filepath.Join(root, "build", "base.qcow2"), []byte("base"), 0o644)
	os.WriteFile(filepath.Join(root, "build", "base.qcow2.key"), []byte("key"), 0o600)
	plan, err := runtime.Eval(runtime.Options{
		Script:  filepath.Join(root, "scripts", "soe.star"),
		Vars:    []string{"source=disk", "base_image=build/base.qcow2"},
		Modules: starlark.StringDict{"qemu": Module, "ssh": ssh.Module},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := plan.Resource("qemu.image.vfx-studio-soe")
	if r == nil {
		t.Fatalf("no image in the plan")
	}
	tools := &fakeTools{}
	d := NewDriver(plan.Root, Options{Tools: tools})
	d.SetPlan(plan)
	c, err := d.Diff(context.Background(), r, nil)
	if err != nil || c.Action != apply.Create {
		t.Fatalf("Diff: %+v, %v", c, err)
	}
	in := c.Private.(*diffState).inputs
	for _, part := range []string{"spec", "provision", "base_image", "ssh_private_key"} {
		if in.Parts[part] == "" {
			t.Errorf("inputs lack %s: %v", part, in.Parts)
		}
	}
	b := d.newBuild(r, r.Spec.(*Image), nopReporter{})
	if len(b.tasks) == 0 {
		t.Fatalf("no provisioning tasks found for %s", r.Spec.(*Image).ProvisionHost)
	}
	for _, task := range b.tasks {
		if !strings.HasPrefix(task.Name, "vfx-studio-soe-build:") {
			t.Errorf("task %s is not on the build host", task.Address)
		}
	}
	_, err = d.Apply(context.Background(), r, c, nopReporter{})
	if err == nil || !strings.Contains(err.Error(), "no SSH provisioner") || len(tools.imgArgs) != 0 {
		t.Errorf("Apply without a provisioner: %v (qemu-img %v)", err, tools.imgArgs)
	}
}
