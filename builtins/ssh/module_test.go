package ssh

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// everyTask declares one task of each kind on a host.
const everyTask = `
h = ssh.host("vfx-dev-001", "172.16.0.11", user = "ops", key = "~/.ssh/studio", become = True,
             become_password = secret("sudo"))
h.group("render", system = True)
h.user("render", groups = ["render", h.facts.admin_group], home = "/var/lib/render", system = True)
h.authorized_key("render", [KEY, KEY], name = "render keys")
h.file("/vfx", state = "directory", mode = "0755", owner = "ops", group = "render")
h.copy("/etc/render.key", content = secret("render_key"), mode = 0o600, backup = True)
h.copy("/etc/motd", src = "motd.txt")
h.template("/etc/render.conf", "render.conf.tmpl", values = {"host": "vfx-dev-001", "token": secret("render_key")})
h.line_in_file("/etc/fstab", line = "tmpfs /scratch tmpfs defaults 0 0", regexp = " /scratch ", insert_after = "EOF")
h.package(["nfs-utils", "chrony"], state = "latest")
h.service("chronyd", enabled = True, state = "started")
h.mount("/scratch", source = "tmpfs", fstype = "tmpfs", options = "size=1g")
h.command(["exportfs", "-ra"], creates = "/var/lib/nfs/etab")
h.shell("echo ok && true", unless = "test -e /x")
h.upload("images/soe.qcow2", "/var/lib/images/soe.qcow2")
ssh.inventory(groups = {"dev": [h]})
`

func TestEveryTask(t *testing.T) {
	dir := t.TempDir()
	key, err := os.ReadFile("../../scripts/keys/ops.pub")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		".studiorun/.keep":  "",
		"motd.txt":          "Welcome to the studio.\n",
		"render.conf.tmpl":  "host={{ .host }}\ntoken={{ .token }}\n",
		"studio.star":       "KEY = " + starlark.String(strings.TrimSpace(string(key))).String() + "\n" + everyTask,
		"images/.gitignore": "*\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := runtime.Eval(runtime.Options{
		Script:  filepath.Join(dir, "studio.star"),
		Secrets: runtime.Secrets{File: map[string]string{"sudo": "s3cret-sudo", "render_key": "s3cret-key"}},
		Modules: starlark.StringDict{"ssh": Module},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := plan.RenderJSON(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Errorf("the plan shows a secret:\n%s", out.String())
	}
	got := map[string]string{}
	var order []string
	for _, r := range plan.Resources {
		attrs, err := r.Attributes()
		if err != nil {
			t.Fatal(err)
		}
		got[string(r.Address)] = string(attrs)
		order = append(order, string(r.Address))
	}
	for addr, want := range map[string]string{
		"ssh.host.vfx-dev-001":                             `"key":"~/.ssh/studio","become":true,"become_password":"(secret)"}`,
		"ssh.user.vfx-dev-001:render":                      `"groups":["render","${facts.admin_group}"],"home":"/var/lib/render","system":true`,
		"ssh.authorized_key.vfx-dev-001:render keys":       `"user":"render","keys":["ssh-ed25519 `,
		"ssh.file.vfx-dev-001:/vfx":                        `"state":"directory","mode":"0755","owner":"ops","group":"render"}`,
		"ssh.copy.vfx-dev-001:/etc/render.key":             `"content":"(secret)","mode":"0600","backup":true}`,
		"ssh.copy.vfx-dev-001:/etc/motd":                   `"src":"motd.txt","sha256":"`,
		"ssh.template.vfx-dev-001:/etc/render.conf":        `"src":"render.conf.tmpl","content":"host=vfx-dev-001\ntoken=(secret)\n"`,
		"ssh.line_in_file.vfx-dev-001:/etc/fstab":          `"regexp":" /scratch ","state":"present","insert_after":"EOF","create":false}`,
		"ssh.package.vfx-dev-001:nfs-utils,chrony":         `"names":["nfs-utils","chrony"],"state":"latest"}`,
		"ssh.service.vfx-dev-001:chronyd":                  `"enabled":true,"state":"started"}`,
		"ssh.mount.vfx-dev-001:/scratch":                   `"source":"tmpfs","fstype":"tmpfs","options":"size=1g","state":"mounted"}`,
		"ssh.command.vfx-dev-001:exportfs -ra":             `"argv":["exportfs","-ra"],"creates":"/var/lib/nfs/etab"}`,
		"ssh.shell.vfx-dev-001:echo ok && true":            `"script":"echo ok && true","unless":"test -e /x"}`,
		"ssh.upload.vfx-dev-001:/var/lib/images/soe.qcow2": `"src":"images/soe.qcow2","dest":"/var/lib/images/soe.qcow2"}`,
		"ssh.inventory.default":                            `{"groups":{"dev":["ssh.host.vfx-dev-001"]}}`,
	} {
		if a, ok := got[addr]; !ok {
			t.Errorf("no %s in the plan: %v", addr, order)
		} else if !strings.Contains(a, want) {
			t.Errorf("%s: attributes %s do not contain %s", addr, a, want)
		}
	}
	// The host's tasks form one chain, in the order of the script.
	var prev runtime.Address
	for _, r := range plan.Resources {
		if _, ok := r.Spec.(Task); !ok {
			continue
		}
		want := []runtime.Address{"ssh.host.vfx-dev-001"}
		if prev != "" {
			want = append(want, prev)
		}
		slices.Sort(want)
		if !slices.Equal(r.DependsOn, want) {
			t.Errorf("%s depends on %v, want %v", r.Address, r.DependsOn, want)
		}
		prev = r.Address
	}
	cp := plan.Resource("ssh.copy.vfx-dev-001:/etc/render.key").Spec.(*Copy)
	if string(cp.Data()) != "s3cret-key" {
		t.Errorf("copy data = %q, want the secret's value", cp.Data())
	}
	if md := plan.Resource("ssh.copy.vfx-dev-001:/etc/motd").Spec.(*Copy); string(md.Data()) != "Welcome to the studio.\n" {
		t.Errorf("copy src data = %q", md.Data())
	}
}
