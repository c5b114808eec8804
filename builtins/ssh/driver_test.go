package ssh

import (
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/tasks")

func TestParseFacts(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      HostFacts
	}{
		{"debian as root", "id=debian\nid_like=\nversion_id=12\npm=apt-get\ninit=systemd\ngroup=sudo\nuser=root\nuid=0\nend=1\n",
			HostFacts{OSID: "debian", Version: "12", OSFamily: "debian", PackageManager: "apt", Init: "systemd", AdminGroup: "sudo", User: "root", Root: true}},
		{"rocky with sudo", "id=rocky\nid_like=rhel centos fedora\nversion_id=9.3\npm=dnf\npm=yum\ninit=systemd\ngroup=wheel\nuser=ops\nuid=1000\nsftp_server=/usr/libexec/openssh/sftp-server\nsudo=nopasswd\nend=1\n",
			HostFacts{OSID: "rocky", OSLike: "rhel centos fedora", Version: "9.3", OSFamily: "el", PackageManager: "dnf", Init: "systemd", AdminGroup: "wheel", User: "ops", SudoNoPassword: true, SFTPServer: "/usr/libexec/openssh/sftp-server"}},
		{"centos 7 has yum only", "id=centos\nid_like=rhel fedora\nversion_id=7\npm=yum\ngroup=wheel\nuser=root\nuid=0\nend=1\n",
			HostFacts{OSID: "centos", OSLike: "rhel fedora", Version: "7", OSFamily: "el", PackageManager: "yum", AdminGroup: "wheel", User: "root", Root: true}},
		{"ubuntu is debian", "id=ubuntu\nid_like=debian\nversion_id=24.04\npm=apt-get\ngroup=sudo\nuser=ops\nuid=1000\nend=1\n",
			HostFacts{OSID: "ubuntu", OSLike: "debian", Version: "24.04", OSFamily: "debian", PackageManager: "apt", AdminGroup: "sudo", User: "ops"}},
		{"unknown os falls back on its groups", "id=alpine\nid_like=\nversion_id=3.19\ngroup=wheel\nuser=root\nuid=0\nend=1\n",
			HostFacts{OSID: "alpine", Version: "3.19", AdminGroup: "wheel", User: "root", Root: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFacts(tc.out)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if _, err := ParseFacts("id=debian\n"); err == nil || !strings.Contains(err.Error(), "ends early") {
		t.Errorf("a cut output: got %v, want an error saying it ends early", err)
	}
}

func TestFactsScriptRunsOnThisMachine(t *testing.T) {
	out, err := exec.Command("sh", "-c", factsScript).Output()
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFacts(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if f.User == "" {
		t.Errorf("no user in %+v", f)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "''",
		"/etc/sudoers.d/x": "/etc/sudoers.d/x",
		"a b":              "'a b'",
		"it's":             `'it'\''s'`,
		"$(reboot)":        "'$(reboot)'",
		"%ops":             "%ops",
		"a\nb":             "'a\nb'",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(in)).Output()
		if err != nil || string(out) != in {
			t.Errorf("sh printed %q for Quote(%q), err %v", out, in, err)
		}
	}
}

// TestCheckScriptOnThisMachine runs a check script with every probe
// helper here and parses it.
func TestCheckScriptOnThisMachine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("hello\n"), 0o640)
	f := &HostFacts{PackageManager: "apt", Init: "systemd"}
	tasks := []Task{
		&File{Path: file, State: "file"},
		&File{Path: filepath.Join(dir, "missing"), State: "file"},
		&LineInFile{Path: file, Line: "x", State: "present"},
		&Command{Argv: []string{"true"}, Guards: Guards{Creates: file, Unless: "true"}},
		&Command{Argv: []string{"true"}, Guards: Guards{Creates: file + ".no", Unless: "false"}},
		&User{Name: "root"},
	}
	var scripts []string
	for _, tk := range tasks {
		s, err := ProbeScript(tk, f)
		if err != nil {
			t.Fatal(err)
		}
		scripts = append(scripts, s)
	}
	out, err := exec.Command("sh", "-c", buildCheck(scripts)).Output()
	if err != nil {
		t.Fatal(err)
	}
	probes, err := parseCheck(string(out), len(scripts))
	if err != nil {
		t.Fatal(err)
	}
	if fs := probes[0].file(); !fs.IsFile || fs.Mode != "640" {
		t.Errorf("file: %+v from %v", fs, probes[0])
	}
	if probes[1].file().Exists {
		t.Errorf("missing file exists: %v", probes[1])
	}
	if c, _, _ := probes[2].Content("content"); c != "hello\n" {
		t.Errorf("content %q", c)
	}
	if !probes[3].Has("creates") || !probes[3].Has("unless") || probes[4].Has("creates") || probes[4].Has("unless") {
		t.Errorf("guards: %v %v", probes[3], probes[4])
	}
	if u, ok := probes[5].user(); !ok || u.home == "" {
		t.Errorf("user root: %v", probes[5])
	}
	if _, err := parseCheck("@@ 0\n", 1); err == nil {
		t.Errorf("a cut check output parsed")
	}
}

func TestEditFstabKeepsOneEntryPerMountPoint(t *testing.T) {
	fstab := "# static\nUUID=1 / ext4 defaults 0 1\nserver:/a /vfx nfs defaults 0 0\n/dev/x /vfx xfs defaults 0 0\n"
	got := EditFstab(fstab, "/vfx", "nfs1:/srv /vfx nfs rw 0 0")
	want := "# static\nUUID=1 / ext4 defaults 0 1\nnfs1:/srv /vfx nfs rw 0 0\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := EditFstab("", "/vfx", "a /vfx nfs rw 0 0"); got != "a /vfx nfs rw 0 0\n" {
		t.Errorf("empty fstab: %q", got)
	}
	if got := EditFstab(fstab, "/vfx", ""); strings.Contains(got, "/vfx") {
		t.Errorf("absent: %q", got)
	}
}

func TestEditLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		task LineInFile
		old  string
		want string
	}{
		{"append", LineInFile{Line: "c", State: "present"}, "a\nb\n", "a\nb\nc\n"},
		{"append to a file without final newline", LineInFile{Line: "c", State: "present"}, "a\nb", "a\nb\nc\n"},
		{"present is unchanged", LineInFile{Line: "b", State: "present"}, "a\nb\n", "a\nb\n"},
		{"regexp replaces the last match", LineInFile{Line: "x=2", Regexp: "^x=", State: "present"}, "x=0\ny\nx=1\n", "x=0\ny\nx=2\n"},
		{"insert after", LineInFile{Line: "n", InsertAfter: "^a", State: "present"}, "a\nb\n", "a\nn\nb\n"},
		{"insert before", LineInFile{Line: "n", InsertBefore: "^b", State: "present"}, "a\nb\n", "a\nn\nb\n"},
		{"BOF", LineInFile{Line: "n", InsertBefore: "BOF", State: "present"}, "a\n", "n\na\n"},
		{"absent by regexp", LineInFile{Regexp: "^#", State: "absent"}, "#a\nb\n#c\n", "b\n"},
		{"absent line", LineInFile{Line: "b", State: "absent"}, "a\nb\n", "a\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EditLines(&tc.task, tc.old)
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestContentChange(t *testing.T) {
	got := ContentChange("content", "/etc/x", "a\nb\nc\nd\ne\nf\ng\nh\n", "a\nb\nc\nD\ne\nf\ng\nh\n")
	want := "--- /etc/x\n+++ /etc/x\n@@ -1,7 +1,7 @@\n a\n b\n c\n-d\n+D\n e\n f\n g"
	if got.Diff != want || got.Note != "1 line(s) added, 1 removed" {
		t.Errorf("got %q\n%s\nwant\n%s", got.Note, got.Diff, want)
	}
	if got := ContentChange("content", "/f", "", "x\n"); got.Diff != "--- /f\n+++ /f\n@@ -0,0 +1 @@\n+x" {
		t.Errorf("new file: %q", got.Diff)
	}
	if got := ContentChange("content", "/f", "x", "x"); got.Diff != "" {
		t.Errorf("equal files differ: %q", got.Diff)
	}
	long := strings.Repeat("x\n", maxDiffLines+1)
	if got := ContentChange("content", "/f", long, ""); got.Diff != "" || !strings.Contains(got.Note, "too long to compare") {
		t.Errorf("long file: %+v", got)
	}
}

// golden task cases: given a task, the host's facts and the state its
// check printed, the decision and the commands it runs (pyinfra style).

var debian = &HostFacts{OSID: "debian", Version: "12", OSFamily: "debian", PackageManager: "apt", Init: "systemd", AdminGroup: "sudo", User: "root", Root: true}
var rocky = &HostFacts{OSID: "rocky", OSLike: "rhel centos fedora", Version: "9", OSFamily: "el", PackageManager: "dnf", Init: "systemd", AdminGroup: "wheel", User: "ops", SudoNoPassword: true}

func text(s string) *runtime.Text {
	t, _ := runtime.UnpackText("content", starlark.String(s))
	return t
}

func secretText(s string) *runtime.Text {
	t, _ := runtime.UnpackText("content", runtime.NewSecret(s))
	return t
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func mode(m uint32) *runtime.Mode { v := runtime.Mode(m); return &v }

const opsKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGBIbdDJdGpmzYaBp6qr1bUZ2jQyvtgWvXSAjYqlzZDg ops@studio"

var sudoers = "%ops ALL=(ALL) NOPASSWD: ALL\n"

var goldenCases = []struct {
	name  string
	task  Task
	facts *HostFacts
	state Probe
}{
	{"user_create_admin_group_debian", &User{Name: "ops", Shell: "/bin/bash", Groups: []Group{"${facts.admin_group}"}, State: "present"}, debian, Probe{}},
	{"user_create_admin_group_el", &User{Name: "ops", Shell: "/bin/bash", Groups: []Group{"${facts.admin_group}"}, State: "present"}, rocky, Probe{}},
	{"user_ok", &User{Name: "ops", Shell: "/bin/bash", Groups: []Group{"${facts.admin_group}"}, State: "present"}, debian,
		Probe{"passwd": "ops:x:1000:1000::/home/ops:/bin/bash", "groups": "ops,sudo"}},
	{"user_shell_and_group", &User{Name: "ops", Shell: "/bin/bash", Groups: []Group{"${facts.admin_group}"}, State: "present"}, rocky,
		Probe{"passwd": "ops:x:1000:1000::/home/ops:/bin/sh", "groups": "ops"}},
	{"user_absent", &User{Name: "old", State: "absent"}, debian, Probe{"passwd": "old:x:1001:1001::/home/old:/bin/sh", "groups": "old"}},
	{"group_create", &GroupSpec{Name: "vfx", State: "present"}, debian, Probe{}},
	{"group_ok", &GroupSpec{Name: "vfx", State: "present"}, debian, Probe{"exists": "1"}},
	{"authorized_key_user_missing", &AuthorizedKey{User: "ops", Keys: []string{opsKey}, Exclusive: true}, debian, Probe{}},
	{"authorized_key_exclusive_replaces", &AuthorizedKey{User: "ops", Keys: []string{opsKey}, Exclusive: true}, debian,
		Probe{"passwd": "ops:x:1000:1000::/home/ops:/bin/bash", "groups": "ops", "home": "/home/ops", "dir_type": "directory", "dir_mode": "700", "dir_owner": "ops", "dir_group": "ops",
			"type": "regular file", "mode": "600", "owner": "ops", "group": "ops", "content": b64("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ old@laptop\n")}},
	{"authorized_key_ok", &AuthorizedKey{User: "ops", Keys: []string{opsKey}, Exclusive: true}, debian,
		Probe{"passwd": "ops:x:1000:1000::/home/ops:/bin/bash", "groups": "ops", "home": "/home/ops", "dir_type": "directory", "dir_mode": "700", "dir_owner": "ops", "dir_group": "ops",
			"type": "regular file", "mode": "600", "owner": "ops", "group": "ops", "content": b64(opsKey + "\n")}},
	{"file_directory_create", &File{Path: "/vfx", State: "directory", Ownership: Ownership{Mode: mode(0o775), Group: "${facts.admin_group}"}}, rocky, Probe{"type": "absent"}},
	{"file_directory_mode", &File{Path: "/vfx", State: "directory", Ownership: Ownership{Mode: mode(0o775)}}, rocky, Probe{"type": "directory", "mode": "755", "owner": "root", "group": "root"}},
	{"file_absent", &File{Path: "/tmp/old", State: "absent"}, debian, Probe{"type": "regular file", "mode": "644", "owner": "root", "group": "root"}},
	{"copy_sudoers_create", &Copy{Dest: "/etc/sudoers.d/ops", Content: text(sudoers), Write: Write{Ownership: Ownership{Mode: mode(0o440), Owner: "root", Group: "root"}, Validate: "visudo -cf %s"}}, rocky,
		Probe{"type": "absent", "parent": "1"}},
	{"copy_sudoers_ok", &Copy{Dest: "/etc/sudoers.d/ops", Content: text(sudoers), Write: Write{Ownership: Ownership{Mode: mode(0o440), Owner: "root", Group: "root"}, Validate: "visudo -cf %s"}}, rocky,
		Probe{"type": "regular file", "mode": "440", "owner": "root", "group": "root", "sha256": sha256Hex([]byte(sudoers)), "parent": "1", "content": b64(sudoers)}},
	{"copy_content_diff_backup", &Copy{Dest: "/etc/motd", Content: text("welcome\nto vfx\n"), Write: Write{Backup: true}}, debian,
		Probe{"type": "regular file", "mode": "644", "owner": "root", "group": "root", "sha256": "x", "parent": "1", "content": b64("welcome\n")}},
	{"copy_secret_content", &Copy{Dest: "/etc/token", Content: secretText("hunter2\n"), Write: Write{Ownership: Ownership{Mode: mode(0o600)}}}, debian,
		Probe{"type": "regular file", "mode": "600", "owner": "root", "group": "root", "sha256": "x", "parent": "1"}},
	{"copy_mode_only", &Copy{Dest: "/etc/motd", Content: text("hi\n"), Write: Write{Ownership: Ownership{Mode: mode(0o644)}}}, debian,
		Probe{"type": "regular file", "mode": "600", "owner": "root", "group": "root", "sha256": sha256Hex([]byte("hi\n")), "parent": "1", "content": b64("hi\n")}},
	{"line_in_file_fstab_append", &LineInFile{Path: "/etc/fstab", Line: "tmpfs /scratch tmpfs defaults 0 0", State: "present"}, debian,
		Probe{"type": "regular file", "mode": "644", "owner": "root", "group": "root", "content": b64("# /etc/fstab\n")}},
	{"line_in_file_missing_file", &LineInFile{Path: "/etc/x.conf", Line: "a=1", State: "present"}, debian, Probe{"type": "absent"}},
	{"keyed_line_exports_one_line", &KeyedLine{Path: "/etc/exports", Field: 0, Key: "/srv/nfs/vfx", Line: "/srv/nfs/vfx 172.16.0.0/24(rw,sync)"}, debian,
		Probe{"type": "regular file", "mode": "644", "owner": "root", "group": "root", "content": b64("/srv/nfs/vfx *(ro)\n/home *(ro)\n/srv/nfs/vfx 10.0.0.0/8(rw)\n")}},
	{"keyed_line_exports_created", &KeyedLine{Path: "/etc/exports", Field: 0, Key: "/srv/nfs/vfx", Line: "/srv/nfs/vfx 172.16.0.0/24(rw,sync)"}, debian, Probe{"type": "absent"}},
	{"package_apt_install_missing", &Package{Names: []string{"nfs-common", "sudo", "chrony"}, State: "present"}, debian, Probe{"pkg": "sudo installed\nchrony not-installed"}},
	{"package_dnf_ok", &Package{Names: []string{"nfs-utils"}, State: "present"}, rocky, Probe{"pkg": "nfs-utils installed"}},
	{"package_dnf_remove", &Package{Names: []string{"telnet", "rsh"}, State: "absent"}, rocky, Probe{"pkg": "telnet installed"}},
	{"service_enable_start", &Service{Name: "nfs-server", Enabled: new(true), State: "started"}, rocky, Probe{"load": "loaded", "enabled": "disabled", "active": "inactive"}},
	{"service_ok", &Service{Name: "nfs-server", Enabled: new(true), State: "started"}, rocky, Probe{"load": "loaded", "enabled": "enabled", "active": "active"}},
	{"service_not_installed_yet", &Service{Name: "nfs-server", Enabled: new(true), State: "started"}, rocky, Probe{"load": "not-found", "enabled": "", "active": "inactive"}},
	{"service_unit_written_earlier", &Service{Name: "render-agent", Enabled: new(true), State: "started"}, debian,
		Probe{"load": "not-found", "unitfile": "/etc/systemd/system/render-agent.service", "enabled": "disabled", "active": "inactive"}},
	{"service_unit_changed_on_disk", &Service{Name: "render-agent", State: "started"}, debian,
		Probe{"load": "loaded", "reload": "yes", "enabled": "enabled", "active": "inactive"}},
	{"service_unit_changed_nothing_to_do", &Service{Name: "render-agent", State: "started"}, debian,
		Probe{"load": "loaded", "reload": "yes", "enabled": "enabled", "active": "active"}},
	{"mount_new", &Mount{Path: "/scratch", Source: "tmpfs", Fstype: "tmpfs", Options: "size=64m", State: "mounted"}, debian, Probe{"content": b64("# fstab\n")}},
	{"mount_two_lines_for_vfx", &Mount{Path: "/vfx", Source: "vfx-nfs-001:/srv/nfs/vfx", Fstype: "nfs", Options: "defaults", State: "mounted"}, rocky,
		Probe{"content": b64("/dev/sda1 / xfs defaults 0 0\nvfx-nfs-001:/srv/nfs/vfx /vfx nfs rw 0 0\n172.16.0.10:/vfx /vfx nfs defaults 0 0\n"), "mounted": "vfx-nfs-001:/srv/nfs/vfx nfs"}},
	{"mount_ok", &Mount{Path: "/scratch", Source: "tmpfs", Fstype: "tmpfs", Options: "defaults", State: "mounted"}, debian,
		Probe{"content": b64("tmpfs  /scratch\ttmpfs defaults 0 0\n"), "mounted": "tmpfs tmpfs"}},
	{"mount_absent", &Mount{Path: "/scratch", Source: "tmpfs", Fstype: "tmpfs", Options: "defaults", State: "absent"}, debian,
		Probe{"content": b64("tmpfs /scratch tmpfs defaults 0 0\n"), "mounted": "tmpfs tmpfs"}},
	{"command_creates_exists", &Command{Argv: []string{"make", "install"}, Guards: Guards{Creates: "/usr/local/bin/tool"}}, debian, Probe{"creates": "1"}},
	{"command_runs", &Command{Argv: []string{"make", "install"}, Guards: Guards{Creates: "/usr/local/bin/tool"}}, debian, Probe{}},
	{"shell_unless", &Shell{Script: text("echo hi > /tmp/x"), Guards: Guards{Unless: "grep -q hi /tmp/x"}}, debian, Probe{"unless": "0"}},
	{"shell_secret_runs", &Shell{Script: secretText("echo s3cret | passwd --stdin ops")}, rocky, Probe{}},
}

func renderDecision(d *Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "action: %s\n", d.Action)
	if d.Why != "" && d.Action == apply.NoOp {
		fmt.Fprintf(&b, "why: %s\n", d.Why)
	}
	if d.Pending != "" {
		fmt.Fprintf(&b, "pending: %s\n", d.Pending)
	}
	for _, a := range d.Attrs {
		fmt.Fprintf(&b, "attr %s: %q -> %q", a.Name, a.Old, a.New)
		if a.Note != "" {
			fmt.Fprintf(&b, "\n  note:\n    %s", strings.ReplaceAll(a.Note, "\n", "\n    "))
		}
		if a.Diff != "" {
			fmt.Fprintf(&b, "\n  diff:\n    %s", strings.ReplaceAll(a.Diff, "\n", "\n    "))
		}
		b.WriteByte('\n')
	}
	if !d.Script.Empty() {
		b.WriteString("commands:\n")
		for _, l := range d.Script.Lines() {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if d.Stdin != nil {
		if d.secret {
			b.WriteString("stdin: (secret)\n")
		} else {
			fmt.Fprintf(&b, "stdin: %q\n", d.Stdin)
		}
	}
	return b.String()
}

func TestGoldenTaskCommands(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			seen[tc.name+".case"] = true
			d, err := Decide(tc.task, tc.facts, tc.state)
			var got string
			if err != nil {
				got = "error: " + err.Error() + "\n"
			} else {
				got = renderDecision(d)
			}
			if strings.Contains(got, "hunter2") || strings.Contains(got, "s3cret") {
				t.Errorf("a secret shows:\n%s", got)
			}
			path := filepath.Join("testdata", "tasks", tc.name+".case")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "tasks", "*.case"))
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no case", f)
		}
	}
}

// TestWriteFileScriptRunsHere runs the atomic write (validate, mode,
// backup) with sh on this machine.
func TestWriteFileScriptRunsHere(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "conf")
	os.WriteFile(dest, []byte("old\n"), 0o600)
	s := writeFileScript(dest, resolvedOwnership{Mode: "0640"}, "grep -q new %s", true)
	cmd := exec.Command("sh", "-c", "set -e\n"+s.String())
	cmd.Stdin = strings.NewReader("new\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	data, _ := os.ReadFile(dest)
	st, _ := os.Stat(dest)
	if string(data) != "new\n" || st.Mode().Perm() != 0o640 {
		t.Errorf("got %q mode %o", data, st.Mode().Perm())
	}
	backups, _ := filepath.Glob(dest + ".*~")
	if len(backups) != 1 {
		t.Errorf("backups: %v", backups)
	}
	// A failing validate leaves the file and no temporary file.
	s = writeFileScript(dest, resolvedOwnership{}, "false %s", false)
	cmd = exec.Command("sh", "-c", "set -e\n"+s.String())
	cmd.Stdin = strings.NewReader("bad\n")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "validate") {
		t.Errorf("validate failure: %v %s", err, out)
	}
	data, _ = os.ReadFile(dest)
	left, _ := filepath.Glob(filepath.Join(dir, ".studiorun.*"))
	if string(data) != "new\n" || len(left) != 0 {
		t.Errorf("after a failed validate: %q, temporary files %v", data, left)
	}
}

// TestUploadScriptRunsHere runs the install of an upload with sh on this
// machine, in both of its inputs: the file streamed on stdin after an
// empty line, and the suffix of a temporary file already written.
func TestUploadScriptRunsHere(t *testing.T) {
	run := func(s Script, stdin string) (string, error) {
		cmd := exec.Command("sh", "-c", "set -e\n"+s.String())
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	dir := filepath.Join(t.TempDir(), "new")
	dest := filepath.Join(dir, "payload")
	if out, err := run(uploadScript(dest, resolvedOwnership{Mode: "0640"}, true), "\nstreamed\n"); err != nil {
		t.Fatalf("streamed: %v: %s", err, out)
	}
	data, _ := os.ReadFile(dest)
	st, _ := os.Stat(dest)
	if string(data) != "streamed\n" || st.Mode().Perm() != 0o640 {
		t.Errorf("streamed: got %q mode %o", data, st.Mode().Perm())
	}

	token := "0123456789abcdef"
	os.WriteFile(filepath.Join(dir, ".studiorun."+token), []byte("over sftp\n"), 0o600)
	if out, err := run(uploadScript(dest, resolvedOwnership{Mode: "0604"}, false), token+"\n"); err != nil {
		t.Fatalf("written: %v: %s", err, out)
	}
	data, _ = os.ReadFile(dest)
	st, _ = os.Stat(dest)
	if string(data) != "over sftp\n" || st.Mode().Perm() != 0o604 {
		t.Errorf("written: got %q mode %o", data, st.Mode().Perm())
	}

	// A failure removes the temporary file; a bad first line is refused.
	os.WriteFile(filepath.Join(dir, ".studiorun."+token), []byte("never\n"), 0o600)
	if out, err := run(uploadScript(dest, resolvedOwnership{Owner: "no-such-user-here"}, false), token+"\n"); err == nil {
		t.Errorf("chown to a missing user succeeded: %s", out)
	}
	for _, in := range []string{"../../etc/x\n", "0123456789ABCDEF\n", "012345678\n"} {
		if out, err := run(uploadScript(dest, resolvedOwnership{}, false), in); err == nil || !strings.Contains(out, "upload: bad") {
			t.Errorf("first line %q: %v %s", in, err, out)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".studiorun.*"))
	if data, _ = os.ReadFile(dest); string(data) != "over sftp\n" || len(left) != 0 {
		t.Errorf("after failures: %q, temporary files %v", data, left)
	}
}
