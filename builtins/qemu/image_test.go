package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// evalImage evaluates a script declaring one qemu.image, in a project of
// its own, with secret("root_password") set to "hunter2".
func evalImage(t *testing.T, script string) (*runtime.Resource, *Image) {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, ".studiorun"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "images", "soe.star")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	plan, err := runtime.Eval(runtime.Options{
		Script:  file,
		Secrets: runtime.Secrets{File: map[string]string{"root_password": "hunter2"}},
		Modules: starlark.StringDict{"qemu": Module},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := plan.Resource("qemu.image.soe")
	if r == nil {
		t.Fatal("no qemu.image.soe in the plan")
	}
	return r, r.Spec.(*Image)
}

// TestImageSecrets checks that the driver gets the secrets that the plan
// hides: the kickstart's password and the SSH password.
func TestImageSecrets(t *testing.T) {
	r, spec := evalImage(t, `
pw = secret("root_password")
qemu.image("soe", "1.0",
    iso = "isos/centos.iso",
    iso_checksum = "sha256:" + "AB" * 32,
    http_files = {"ks.cfg": template("rootpw {{ .pw }}\n", pw = pw), "motd": "hello\n"},
    boot_command = ["<tab> ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg<enter>"],
    ssh_password = pw,
)
`)
	if got := spec.HTTPFiles["ks.cfg"].Reveal(); got != "rootpw hunter2\n" {
		t.Errorf("ks.cfg content = %q, want the password revealed to the driver", got)
	}
	if got := spec.HTTPFiles["motd"].Reveal(); got != "hello\n" {
		t.Errorf("motd content = %q", got)
	}
	if spec.SSHPassword == nil || spec.SSHPassword.Reveal() != "hunter2" {
		t.Errorf("ssh_password not kept for the driver")
	}
	attrs, err := r.Attributes()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(attrs), "hunter2") {
		t.Errorf("attributes show the secret: %s", attrs)
	}
	if !strings.Contains(string(attrs), `"ks.cfg":"rootpw (secret)\n"`) {
		t.Errorf("attributes do not show the kickstart with (secret): %s", attrs)
	}
}

// TestImagePaths checks that local paths are resolved from the script into
// the project, URLs are kept, and the output file is named after the image.
func TestImagePaths(t *testing.T) {
	_, spec := evalImage(t, `
qemu.image("soe", "1.0-rc.1", source = "disk", base_image = "../base/debian.qcow2",
    ssh_private_key = "keys/builder", format = "raw")
`)
	for _, c := range []struct{ what, got, want string }{
		{"base_image", spec.BaseImage, "base/debian.qcow2"},
		{"ssh_private_key", spec.SSHKey, "images/keys/builder"},
		{"output_dir", spec.OutputDir, "images/build"},
		{"output_file", spec.OutputFile, "soe_1.0-rc.1.raw"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	_, spec = evalImage(t, `
qemu.image("soe", "1.0", iso = "https://example.org/centos.iso", iso_checksum = "sha256:" + "AB" * 32,
    ssh_private_key = "~/.ssh/id_ed25519", output_dir = "//out")
`)
	for _, c := range []struct{ what, got, want string }{
		{"iso", spec.ISO, "https://example.org/centos.iso"},
		{"iso_checksum", spec.ISOChecksum, "sha256:" + strings.Repeat("ab", 32)},
		{"ssh_private_key", spec.SSHKey, "~/.ssh/id_ed25519"},
		{"output_dir", spec.OutputDir, "out"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}
