package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// fakeTools stands in for qemu: qemu-img create and convert write files,
// info describes a 1 GiB qcow2, and Start counts the launches.
type fakeTools struct {
	started int
	imgArgs [][]string
}

func (f *fakeTools) Img(_ context.Context, _ io.Writer, args ...string) ([]byte, error) {
	f.imgArgs = append(f.imgArgs, args)
	switch args[0] {
	case "info":
		return []byte(`{"format":"qcow2","virtual-size":1073741824}`), nil
	case "create", "convert":
		var last string
		for _, a := range args {
			if strings.HasSuffix(a, ".qcow2") || strings.HasSuffix(a, ".raw") {
				last = a
			}
		}
		return nil, os.WriteFile(last, []byte("image"), 0o644)
	}
	return nil, fmt.Errorf("fake qemu-img: %v", args)
}

func (f *fakeTools) Start([]string, io.Writer) (Process, error) {
	f.started++
	return nil, fmt.Errorf("fake: no qemu")
}

func (f *fakeTools) Version(context.Context) (string, error) {
	return "QEMU emulator version 0 (fake)", nil
}

type nopReporter struct{}

func (nopReporter) Progress(runtime.Address, string, int64, int64) {}
func (nopReporter) Notef(runtime.Address, string, ...any)          {}

// diskImage returns a source=disk image spec whose base and key exist in
// root.
func diskImage(t *testing.T, root string) (*runtime.Resource, *Image) {
	t.Helper()
	for name, content := range map[string]string{"base.qcow2": "base", "base.key": "key"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pw := runtime.NewSecret("hunter2")
	spec := &Image{
		Version: "0.1.0", Source: "disk", BaseImage: "base.qcow2", OutputDir: "build",
		OutputFile: "soe_0.1.0.qcow2", Format: "qcow2", DiskSize: 2048, Memory: 512, CPUs: 1,
		Accelerator: "tcg", SSHUsername: "root", SSHKey: "base.key", SSHPassword: &pw,
		ShutdownCommand: "poweroff",
	}
	return &runtime.Resource{Address: "qemu.image.soe", Name: "soe", Spec: spec}, spec
}

// writeBuilt writes the image and the manifest that a build of r would.
func writeBuilt(t *testing.T, d *Driver, r *runtime.Resource, spec *Image) {
	t.Helper()
	in, err := computeInputs(r, spec, d.tasks(spec), func(p string) string { return resolvePath(d.root, p) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(d.root, spec.OutputDir)
	os.MkdirAll(dir, 0o755)
	image := filepath.Join(dir, spec.OutputFile)
	os.WriteFile(image, []byte("image"), 0o644)
	data, _ := json.Marshal(manifest{Name: r.Name, InputsHash: in.Hash(), Inputs: in})
	os.WriteFile(manifestPath(image), data, 0o644)
}

func TestDiffCreatesThenSkipsUnchangedInputs(t *testing.T) {
	root := t.TempDir()
	r, spec := diskImage(t, root)
	d := NewDriver(root, Options{Tools: &fakeTools{}})
	c, err := d.Diff(context.Background(), r, nil)
	if err != nil || c.Action != apply.Create {
		t.Fatalf("Diff before any build: %v, %v; want create", c, err)
	}
	writeBuilt(t, d, r, spec)
	owned := d.entry(r, spec)
	c, err = d.Diff(context.Background(), r, owned)
	if err != nil || c.Action != apply.NoOp {
		t.Fatalf("Diff after the build: %+v, %v; want no-op", c, err)
	}
	d.opts.Force = true
	if c, _ = d.Diff(context.Background(), r, owned); c.Action != apply.Replace || c.Attrs[0].Note != "rebuild forced" {
		t.Errorf("Diff with Force: %+v, want a forced replace", c)
	}
}

func TestDiffReplacesNamingTheChangedInputs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, root string, spec *Image)
		want   string
	}{
		{"memory", func(_ *testing.T, _ string, s *Image) { s.Memory = 2048 }, "inputs changed: spec"},
		{"secret password", func(_ *testing.T, _ string, s *Image) { pw := runtime.NewSecret("other"); s.SSHPassword = &pw }, "inputs changed: spec"},
		{"base image content", func(t *testing.T, root string, _ *Image) {
			// Another size: the cached hash of the old content is not reused.
			os.WriteFile(filepath.Join(root, "base.qcow2"), []byte("new base"), 0o600)
		}, "inputs changed: base_image"},
		{"http file", func(t *testing.T, _ string, s *Image) {
			ks, _ := runtime.UnpackText("ks", runtime.NewSecret("rootpw x"))
			s.HTTPFiles = map[string]*runtime.Text{"ks.cfg": ks}
		}, "inputs changed: http_files/ks.cfg, spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			r, spec := diskImage(t, root)
			d := NewDriver(root, Options{Tools: &fakeTools{}})
			writeBuilt(t, d, r, spec)
			tc.change(t, root, spec)
			c, err := d.Diff(context.Background(), r, d.entry(r, spec))
			if err != nil {
				t.Fatal(err)
			}
			if c.Action != apply.Replace || len(c.Attrs) != 1 || c.Attrs[0].Note != tc.want || !c.Attrs[0].ForcesReplace {
				t.Errorf("Diff: %s %+v, want replace with note %q", c.Action, c.Attrs, tc.want)
			}
		})
	}
}

func TestDiffSeesProvisioningTasks(t *testing.T) {
	root := t.TempDir()
	r, spec := diskImage(t, root)
	spec.ProvisionHost = "ssh.host.soe-build"
	task := func(shell string) *runtime.Plan {
		host := &runtime.Resource{Address: "ssh.host.soe-build", Name: "soe-build", Spec: &fakeSpec{Kind_: "ssh.host"}}
		user := &runtime.Resource{Address: "ssh.user.soe-build:ops", Name: "soe-build:ops", Spec: &fakeSpec{Kind_: "ssh.user", Shell: shell},
			DependsOn: []runtime.Address{"ssh.host.soe-build"}}
		return &runtime.Plan{Resources: []*runtime.Resource{r, host, user}}
	}
	d := NewDriver(root, Options{Tools: &fakeTools{}})
	d.SetPlan(task("/bin/bash"))
	writeBuilt(t, d, r, spec)
	d.SetPlan(task("/bin/sh"))
	c, err := d.Diff(context.Background(), r, d.entry(r, spec))
	if err != nil || c.Action != apply.Replace || c.Attrs[0].Note != "inputs changed: provision" {
		t.Fatalf("Diff after a task changed: %+v, %v", c, err)
	}
	// Without a provisioner, the build stops before anything starts.
	tools := &fakeTools{}
	d.tools = tools
	_, err = d.Apply(context.Background(), r, c, nopReporter{})
	if err == nil || !strings.Contains(err.Error(), "no SSH provisioner") || len(tools.imgArgs) != 0 {
		t.Fatalf("Apply without a provisioner: %v (qemu-img calls %v)", err, tools.imgArgs)
	}
}

type fakeSpec struct {
	Kind_ string `json:"-"`
	Shell string `json:"shell,omitempty"`
}

func (f *fakeSpec) Kind() string { return f.Kind_ }

func TestDiffRefusesAnImageItDidNotBuild(t *testing.T) {
	root := t.TempDir()
	r, spec := diskImage(t, root)
	os.MkdirAll(filepath.Join(root, "build"), 0o755)
	os.WriteFile(filepath.Join(root, "build", spec.OutputFile), []byte("someone's"), 0o644)
	d := NewDriver(root, Options{Tools: &fakeTools{}})
	_, err := d.Diff(context.Background(), r, nil)
	if err == nil || !strings.Contains(err.Error(), "studiorun did not build it") {
		t.Fatalf("Diff: %v, want a refusal", err)
	}
}

func TestDeleteRemovesImageAndManifest(t *testing.T) {
	root := t.TempDir()
	r, spec := diskImage(t, root)
	d := NewDriver(root, Options{Tools: &fakeTools{}})
	writeBuilt(t, d, r, spec)
	if err := d.Delete(context.Background(), d.entry(r, spec), nopReporter{}); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(filepath.Join(root, "build"))
	if len(left) != 0 {
		t.Errorf("left after Delete: %v", left)
	}
	if err := d.Delete(context.Background(), d.entry(r, spec), nopReporter{}); err != nil {
		t.Errorf("Delete of a missing image: %v", err)
	}
}

// TestFailedBuildLeavesNoTemporaryFiles runs a build whose qemu cannot
// start: the build folder is gone, output_dir holds only the serial log
// (none here) and no image.
func TestFailedBuildLeavesNoTemporaryFiles(t *testing.T) {
	root := t.TempDir()
	r, _ := diskImage(t, root)
	tools := &fakeTools{}
	d := NewDriver(root, Options{Tools: tools})
	c, err := d.Diff(context.Background(), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Apply(context.Background(), r, c, nopReporter{})
	if err == nil || !strings.Contains(err.Error(), "launch qemu: fake: no qemu") {
		t.Fatalf("Apply: %v", err)
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("build folder left: %s", e.Name())
		}
	}
	if out, _ := os.ReadDir(filepath.Join(root, "build")); len(out) != 0 {
		t.Errorf("output_dir holds %v", out)
	}
	// The overlay was created on the base image, at disk_size.
	create := tools.imgArgs[1]
	if got := strings.Join(create, " "); !strings.Contains(got, "-b "+filepath.Join(root, "base.qcow2")+" -F qcow2") || !strings.HasSuffix(got, " 2048M") {
		t.Errorf("qemu-img %s", got)
	}
}

func TestHashSpecRevealsSecretsWithoutShowingThem(t *testing.T) {
	ks := func(v starlark.Value) *runtime.Text { x, _ := runtime.UnpackText("ks", v); return x }
	a, _ := hashSpec(&Image{HTTPFiles: map[string]*runtime.Text{"ks": ks(runtime.NewSecret("one"))}})
	b, _ := hashSpec(&Image{HTTPFiles: map[string]*runtime.Text{"ks": ks(runtime.NewSecret("two"))}})
	c, _ := hashSpec(&Image{HTTPFiles: map[string]*runtime.Text{"ks": ks(runtime.NewSecret("one"))}})
	if a == b || a != c {
		t.Errorf("hashes %s %s %s: want different secrets to differ and equal ones to match", a, b, c)
	}
}

// TestFetchISOFromURLCachesByChecksum downloads an ISO over HTTP into the
// cache, named by its checksum: a second build downloads nothing, and a
// download that does not match iso_checksum is not kept.
func TestFetchISOFromURLCachesByChecksum(t *testing.T) {
	body := []byte("an installer ISO")
	sum := sha256.Sum256(body)
	hexSum := hex.EncodeToString(sum[:])
	var gets int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets++
		w.Write(body)
	}))
	defer srv.Close()
	cache := t.TempDir()
	b := &build{addr: "qemu.image.x", rep: nopReporter{}, opts: &Options{CacheDir: cache},
		spec: &Image{ISO: srv.URL + "/x.iso", ISOChecksum: "sha256:" + hexSum}}
	for i := 0; i < 2; i++ {
		path, err := fetchISO(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(cache, "iso", hexSum+".iso"); path != want {
			t.Errorf("fetchISO = %s, want %s", path, want)
		}
	}
	if gets != 1 {
		t.Errorf("%d downloads, want 1", gets)
	}
	b.spec.ISOChecksum = "sha256:" + strings.Repeat("1", 64)
	if _, err := fetchISO(context.Background(), b); err == nil || !strings.Contains(err.Error(), "not kept") {
		t.Errorf("fetchISO with a wrong checksum: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(cache, "iso")); len(left) != 1 {
		t.Errorf("the cache holds %v, want only the verified ISO", left)
	}
}

func TestStaleBuildFoldersOfDeadProcessesAreRemoved(t *testing.T) {
	parent := t.TempDir()
	prefix := ".build-x_1.qcow2-build-"
	dead, live, foreign := filepath.Join(parent, prefix+"dead"), filepath.Join(parent, prefix+"live"), filepath.Join(parent, prefix+"nopid")
	for _, d := range []string{dead, live, foreign} {
		os.MkdirAll(d, 0o755)
	}
	// A pid far above pid_max's default is not running.
	os.WriteFile(filepath.Join(dead, "pid"), []byte("2147483600"), 0o644)
	os.WriteFile(filepath.Join(live, "pid"), []byte(fmt.Sprint(os.Getpid())), 0o644)
	removeStaleBuilds(parent, prefix)
	for d, want := range map[string]bool{dead: false, live: true, foreign: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", filepath.Base(d), err == nil, want)
		}
	}
}

// TestReplaceKeepsTheOldImageUntilPublished pins that the delete starting
// a Replace leaves the image: a failed rebuild keeps the previous one.
func TestReplaceKeepsTheOldImageUntilPublished(t *testing.T) {
	root := t.TempDir()
	r, spec := diskImage(t, root)
	d := NewDriver(root, Options{Tools: &fakeTools{}})
	writeBuilt(t, d, r, spec)
	spec.Memory = 4096
	c, err := d.Diff(context.Background(), r, d.entry(r, spec))
	if err != nil || c.Action != apply.Replace {
		t.Fatalf("Diff: %+v, %v", c, err)
	}
	if err := d.Delete(context.Background(), d.entry(r, spec), nopReporter{}); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(root, "build", spec.OutputFile)
	for _, p := range []string{image, manifestPath(image)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after the Replace's delete: %v", err)
		}
	}
	// A plain delete (down) removes them.
	if err := d.Delete(context.Background(), d.entry(r, spec), nopReporter{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(image); !os.IsNotExist(err) {
		t.Errorf("after down: %v", err)
	}
}
