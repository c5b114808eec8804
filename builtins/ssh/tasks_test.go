package ssh

import (
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// wantErr checks err against want: "" for no error, else a substring.
func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
	case want != "" && err == nil:
		t.Errorf("%s: no error, want one containing %q", what, want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("%s: error %q does not contain %q", what, err, want)
	}
}

func TestCheckPath(t *testing.T) {
	for _, c := range []struct{ path, err string }{
		{"/vfx", ""},
		{"/etc/sudoers.d/ops", ""},
		{"/", ""},
		{"", "empty"},
		{"vfx", "not absolute"},
		{"~/vfx", "not absolute"},
		{"/vfx/", `did you mean "/vfx"`},
		{"/etc/../vfx", `did you mean "/vfx"`},
		{"/a\nb", "newline"},
	} {
		wantErr(t, c.path, CheckPath(c.path), c.err)
	}
}

func TestCheckAccount(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"ops", true}, {"_apt", true}, {"nfs-user", true}, {"a1", true},
		{strings.Repeat("a", 32), true}, {strings.Repeat("a", 33), false},
		{"", false}, {"Ops", false}, {"1ops", false}, {"-ops", false}, {"ops user", false}, {"${facts.x}", false},
	} {
		if err := checkAccount("user", c.name); (err == nil) != c.ok {
			t.Errorf("checkAccount(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestCheckState(t *testing.T) {
	for _, c := range []struct{ state, err string }{
		{"present", ""},
		{"latest", ""},
		{"installed", `Ansible's "installed" is "present" here`},
		{"removed", `Ansible's "removed" is "absent" here`},
		{"gone", `want "present", "absent" or "latest"`},
	} {
		wantErr(t, c.state, checkState(c.state, "present", "absent", "latest"), c.err)
	}
}

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDceuKYO90CaUjynbIhVdKDMR/U+cayXH66DcZDcCsmO ops@vfx-studio"

func TestParsePublicKeys(t *testing.T) {
	for _, c := range []struct {
		text string
		keys int
		err  string
	}{
		{testKey + "\n", 1, ""},
		{"# the ops key\n\n" + testKey + "\n" + testKey + "\n", 2, ""},
		{`from="172.16.0.0/24" ` + testKey, 1, ""},
		{"", 0, "no public key"},
		{"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----", 0, "private key"},
		{"ssh-ed25519", 0, "not an OpenSSH public key"},
		{"AAAAC3NzaC1lZDI1NTE5AAAAIDce", 0, "not an OpenSSH public key"},
		{"ssh-ed25519 not-base64!", 0, "not valid base64"},
		{"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDceuKYO90CaUjynbIhVdKDMR/U+cayXH66DcZDcCsmO", 0, "not a ssh-rsa key"},
		{testKey + "\nssh-ed25519 AAAA", 0, "key line 2"},
	} {
		keys, err := parsePublicKeys(c.text)
		wantErr(t, c.text, err, c.err)
		if len(keys) != c.keys {
			t.Errorf("%q: %d keys, want %d", c.text, len(keys), c.keys)
		}
	}
}

func TestCheckMountOptions(t *testing.T) {
	for _, c := range []struct{ options, err string }{
		{"defaults", ""},
		{"rw,noatime,vers=4.2", ""},
		{"", "want comma-separated"},
		{"rw,,noatime", "want comma-separated"},
		{"rw, noatime", "want comma-separated"},
	} {
		wantErr(t, c.options, CheckMountOptions(c.options), c.err)
	}
}

func TestCheckMountSource(t *testing.T) {
	for _, c := range []struct{ source, fstype, err string }{
		{"vfx-nfs-001:/srv/nfs/vfx", "nfs", ""},
		{"tmpfs", "tmpfs", ""},
		{"", "", "missing source and fstype"},
		{"tmpfs", "", "missing fstype"},
		{"", "nfs", "missing source:"},
		{"my share", "cifs", "contains a blank"},
		{"/dev/vdb1", "XFS", `fstype "XFS"`},
	} {
		wantErr(t, c.source+" "+c.fstype, checkMountSource(c.source, c.fstype), c.err)
	}
}

func TestCommandArgv(t *testing.T) {
	for _, c := range []struct {
		argv     []string
		isString bool
		want     string
		err      string
	}{
		{[]string{"exportfs -ra"}, true, "exportfs|-ra", ""},
		{[]string{"  systemctl  daemon-reload "}, true, "systemctl|daemon-reload", ""},
		{[]string{"sh", "-c", "echo $HOME | wc"}, false, "sh|-c|echo $HOME | wc", ""},
		{[]string{"echo $HOME"}, true, "", `contains '$'`},
		{[]string{"rm /tmp/*.log"}, true, "", `contains '*'`},
		{[]string{"   "}, true, "", "empty"},
		{[]string{}, false, "", "empty"},
	} {
		argv, err := commandArgv(c.argv, c.isString)
		wantErr(t, strings.Join(c.argv, " "), err, c.err)
		if got := strings.Join(argv, "|"); err == nil && got != c.want {
			t.Errorf("commandArgv(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}

func TestCheckAddress(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"172.16.0.11", true}, {"fd00::11", true}, {"vfx-dev-001", true}, {"vfx-dev-001.studio.lan", true}, {"VFX-DEV-001", true},
		{"", false}, {"172.16.0.11:22", false}, {"ops@vfx-dev-001", false}, {"-vfx", false}, {"vfx_dev", false},
	} {
		if err := CheckAddress(c.addr); (err == nil) != c.ok {
			t.Errorf("CheckAddress(%q) = %v, want ok=%v", c.addr, err, c.ok)
		}
	}
}

func TestCheckLineArgs(t *testing.T) {
	for _, c := range []struct {
		spec LineInFile
		err  string
	}{
		{LineInFile{State: "present", Line: "a"}, ""},
		{LineInFile{State: "present", Line: "a", Regexp: "^a", InsertAfter: "EOF"}, ""},
		{LineInFile{State: "absent", Regexp: "^a"}, ""},
		{LineInFile{State: "present", Regexp: "^a"}, "needs line="},
		{LineInFile{State: "absent"}, "needs line= or regexp="},
		{LineInFile{State: "absent", Line: "a", Create: true}, "no meaning"},
		{LineInFile{State: "present", Line: "a\nb"}, "line break"},
		{LineInFile{State: "present", Line: "a", InsertAfter: "x", InsertBefore: "y"}, "not both"},
	} {
		wantErr(t, c.spec.Line, checkLineArgs(&c.spec), c.err)
	}
}

func TestWriteValidate(t *testing.T) {
	for _, tc := range []struct {
		validate starlark.Value
		err      string
	}{
		{starlark.String("visudo -cf %s"), ""},
		{starlark.None, ""},
		{starlark.String("visudo -c"), "has no %s"},
		{starlark.MakeInt(1), "validate"},
	} {
		var w writeArgs
		w.params()
		w.validate = tc.validate
		_, err := TaskCall{}.write(&w)
		wantErr(t, tc.validate.String(), err, tc.err)
	}
}

// TestDeclareHostForImageBuild declares a host as qemu.image does, for a
// build VM whose address and port are known only once it runs, and checks
// that its tasks are chained in order.
func TestDeclareHostForImageBuild(t *testing.T) {
	thread := &starlark.Thread{Name: "test"}
	b := runtime.NewBuilder()
	b.Attach(thread)
	spec := &HostSpec{User: "root", Password: new(runtime.NewSecret("changeme")), BuildOf: "qemu.image.vfx-studio-soe"}
	host, err := DeclareHost(thread, "qemu.image", "vfx-studio-soe-build", spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range []struct {
		method string
		args   starlark.Tuple
	}{
		{"user", starlark.Tuple{starlark.String("ops")}},
		{"package", starlark.Tuple{starlark.NewList([]starlark.Value{starlark.String("sudo"), starlark.String("chrony")})}},
	} {
		m, err := host.(*Host).Attr(call.method)
		if err != nil || m == nil {
			t.Fatalf("%s: %v", call.method, err)
		}
		if _, err := starlark.Call(thread, m, call.args, nil); err != nil {
			t.Fatalf("%s: %v", call.method, err)
		}
	}
	pkg := b.Resource("ssh.package.vfx-studio-soe-build:sudo,chrony")
	if pkg == nil {
		t.Fatalf("no package task among %v", b.Resources())
	}
	want := []runtime.Address{"ssh.host.vfx-studio-soe-build", "ssh.user.vfx-studio-soe-build:ops"}
	if strings.Join(addrs(pkg.DependsOn), " ") != strings.Join(addrs(want), " ") {
		t.Errorf("package depends on %v, want %v", pkg.DependsOn, want)
	}
	if _, err := DeclareHost(thread, "qemu.image", "other", &HostSpec{User: "root"}); err == nil {
		t.Error("a host without address nor BuildOf was accepted")
	}
}

func addrs(as []runtime.Address) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = string(a)
	}
	return out
}
