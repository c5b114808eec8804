package ssh_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/builtins/nfs"
	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// These tests apply plans to real sshd test hosts (sshtest) through the
// apply engine, as `studiorun up` does.

type router struct{ d *ssh.Driver }

func (r router) Route(string, json.RawMessage) (apply.Driver, error) { return r.d, nil }
func (r router) Close() error                                        { return r.d.Close() }

// project is a project folder holding a script and its files.
type project struct {
	t    *testing.T
	root string
}

func newProject(t *testing.T, files map[string]string) *project {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, ".studiorun"), 0o755)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &project{t: t, root: root}
}

func (p *project) eval(script string) *runtime.Plan {
	p.t.Helper()
	path := filepath.Join(p.root, "servers.star")
	os.WriteFile(path, []byte(script), 0o644)
	plan, err := runtime.Eval(runtime.Options{Script: path, Modules: starlark.StringDict{"ssh": ssh.Module, "nfs": nfs.Module}})
	if err != nil {
		p.t.Fatalf("eval: %v", err)
	}
	return plan
}

// run plans (and with up, applies) the script with a new driver, as one
// run of studiorun does; it returns the changes and the output.
func (p *project) run(plan *runtime.Plan, opts ssh.Options, up bool) (*apply.Changes, string, error) {
	p.t.Helper()
	var out bytes.Buffer
	e, done := testEngine(p.t, p.root, opts, &out)
	defer done()
	ctx := context.Background()
	changes, err := e.Plan(ctx, plan)
	if err == nil && !up {
		err = changes.Failed() // a host that could not be checked fails alone
	}
	if err != nil || !up {
		return changes, out.String(), err
	}
	err = e.Apply(ctx, changes)
	if err == nil && len(e.State.Entries()) != 0 {
		p.t.Errorf("tasks recorded in the state: %v", e.State.Entries())
	}
	return changes, out.String(), err
}

// testEngine is the engine of one run of studiorun with a new ssh driver
// (opts.Out is set to an output to w); done releases the driver and the
// state.
func testEngine(tb testing.TB, root string, opts ssh.Options, w io.Writer) (e *apply.Engine, done func()) {
	tb.Helper()
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	o := apply.NewOutput(w, false)
	opts.Out = o
	d := ssh.NewDriver(opts)
	st, err := apply.OpenState(root, "servers.star")
	if err != nil {
		d.Close()
		tb.Fatal(err)
	}
	e = &apply.Engine{Router: router{d}, State: st, Parallel: 8, HostParallel: 16, Out: o}
	return e, func() {
		d.Close()
		st.Close()
	}
}

func knownHosts(t *testing.T, hosts ...sshtest.Host) string {
	f := filepath.Join(t.TempDir(), "known_hosts")
	var lines []string
	for _, h := range hosts {
		lines = append(lines, h.KnownHostsLine)
	}
	os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	return f
}

func mustExec(t testing.TB, h sshtest.Host, cmd string) string {
	t.Helper()
	out, err := h.Exec(cmd)
	if err != nil {
		t.Fatalf("%s: %s: %v", h.Name, cmd, err)
	}
	return out
}

// pubKeyOf returns the public key (authorized_keys line) of the test key.
func pubKeyOf(t *testing.T, h sshtest.Host) string {
	return strings.TrimSpace(string(xssh.MarshalAuthorizedKey(h.Signer.PublicKey()))) + " test@studiorun"
}

func counts(c *apply.Changes) map[apply.Action]int { return c.Counts() }

const everyTask = `
load("//stdlib/roles/ops_user.star", "ops_user")
for i, addr in enumerate(ADDRS):
    h = ssh.host("t%d" % i, addr, key = KEY, become = True)
    ops_user(h, public_key = PUB)
    h.group("vfx")
    h.user("artist", shell = "/bin/sh", groups = ["vfx", h.facts.admin_group])
    h.file("/srv/vfx", state = "directory", mode = 0o2775, group = "vfx")
    h.file("/srv/vfx/touched", state = "touch", mode = 0o600)
    h.file("/srv/vfx/touched", state = "file", owner = "artist", name = "own it")
    h.copy("/etc/motd", content = "welcome to t%d\n" % i, backup = True)
    h.copy("/etc/studio/files.txt", src = "files.txt", mode = 0o644, name = "needs its dir")
    h.template("/etc/studio.conf", src = "studio.tmpl", values = {"name": "t%d" % i}, mode = 0o640, owner = "root", group = "vfx")
    h.line_in_file("/etc/studio.env", line = "extra=1", create = True)
    h.line_in_file("/etc/studio.env", line = "NAME=t%d" % i, regexp = "^NAME=", insert_before = "BOF", name = "env name")
    h.line_in_file("/etc/hosts", line = "10.77.0.1 gateway.studio")
    h.package(["sudo", "openssh-server"])
    h.mount("/scratch", source = "tmpfs", fstype = "tmpfs", options = "size=16m")
    h.command("touch /srv/vfx/made", creates = "/srv/vfx/made")
    h.shell("echo ran >> /srv/vfx/log", unless = "grep -q ran /srv/vfx/log", name = "log once")
    h.upload("payload.bin", "/srv/vfx/payload.bin", mode = 0o640)
`

func addrsScript(hosts []sshtest.Host, body string, extra string) string {
	var addrs []string
	for _, h := range hosts {
		addrs = append(addrs, fmt.Sprintf("%q", h.Address))
	}
	return fmt.Sprintf("ADDRS = [%s]\nKEY = %q\n%s\n%s", strings.Join(addrs, ", "), hosts[0].KeyPath, extra, body)
}

// TestEachChangeSeesTheOneBefore: the script of a change also reads the
// state of the host's next task to change (no round trip of its own), so
// what it reads must be the state after that change: three tasks on one
// file build on each other, on the first run as on a clean host.
func TestEachChangeSeesTheOneBefore(t *testing.T) {
	hosts := sshtest.Hosts(t, 1)
	p := newProject(t, nil)
	plan := p.eval(addrsScript(hosts, `
h = ssh.host("t0", ADDRS[0], key = KEY)
h.line_in_file("/etc/chain.conf", line = "a", create = True)
h.line_in_file("/etc/chain.conf", line = "b", name = "second")
h.file("/srv/chain", state = "directory")
h.line_in_file("/etc/chain.conf", line = "c", name = "third")
h.shell("test -d /srv/chain && cat /etc/chain.conf > /srv/chain/seen", creates = "/srv/chain/seen")
`, ""))
	kh := knownHosts(t, hosts...)
	if _, out, err := p.run(plan, ssh.Options{KnownHosts: kh}, true); err != nil {
		t.Fatalf("first up: %v\n%s", err, out)
	}
	if got := mustExec(t, hosts[0], "cat /etc/chain.conf; echo --; cat /srv/chain/seen"); got != "a\nb\nc\n--\na\nb\nc\n" {
		t.Errorf("after the first up: %q, want a, b, c in the file and in what the command saw", got)
	}
	if changes, out, err := p.run(plan, ssh.Options{KnownHosts: kh}, true); err != nil || !changes.Empty() {
		t.Errorf("second up: %v, changes %v\n%s", err, changes.Counts(), out)
	}
}

func TestEveryTaskKindConvergesOnRealHosts(t *testing.T) {
	hosts := sshtest.Hosts(t, 2)
	p := newProject(t, map[string]string{
		"studio.tmpl": "# studio\nname={{ .name }}\n",
		"files.txt":   "a\nb\n",
		"payload.bin": strings.Repeat("payload\n", 10000),
	})
	// The ops key is the test key, so that the second script logs in as ops.
	plan := p.eval(addrsScript(hosts, everyTask, fmt.Sprintf("PUB = %q", pubKeyOf(t, hosts[0]))))
	kh := knownHosts(t, hosts...)
	opts := ssh.Options{KnownHosts: kh}

	// Check mode changes nothing.
	changes, out, err := p.run(plan, opts, false)
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	if changes.Empty() {
		t.Fatalf("plan of fresh hosts: no changes")
	}
	if _, err := hosts[0].Exec("id ops"); err == nil {
		t.Fatalf("check mode created user ops")
	}

	start := time.Now()
	_, out, err = p.run(plan, opts, true)
	if err != nil {
		t.Fatalf("first up: %v\n%s", err, out)
	}
	t.Logf("first up of %d resources on 2 hosts: %s", len(plan.Resources), time.Since(start))

	for _, h := range hosts {
		if got := mustExec(t, h, "id -nG ops"); !strings.Contains(got, "sudo") {
			t.Errorf("%s: ops groups %q, want sudo among them", h.Name, got)
		}
		if got := mustExec(t, h, "stat -c '%a %U %G' /etc/sudoers.d/ops"); strings.TrimSpace(got) != "440 root root" {
			t.Errorf("%s: sudoers %q", h.Name, got)
		}
		if got := mustExec(t, h, "cat /home/ops/.ssh/authorized_keys; stat -c %a /home/ops/.ssh /home/ops/.ssh/authorized_keys"); !strings.Contains(got, "test@studiorun") || !strings.Contains(got, "700\n600") {
			t.Errorf("%s: authorized_keys %q", h.Name, got)
		}
		if got := mustExec(t, h, "cat /etc/studio.conf /etc/studio.env; stat -c '%a %G' /etc/studio.conf"); !strings.HasPrefix(got, "# studio\nname=t") || !strings.HasSuffix(got, "extra=1\n640 vfx\n") || !strings.Contains(got, "\nNAME=t") {
			t.Errorf("%s: studio.conf %q", h.Name, got)
		}
		if got := mustExec(t, h, "grep -c ' /scratch ' /etc/fstab; grep ' /scratch ' /proc/self/mounts | cut -d' ' -f3"); got != "1\ntmpfs\n" {
			t.Errorf("%s: /scratch %q", h.Name, got)
		}
		if got := mustExec(t, h, "cat /srv/vfx/log; stat -c '%a %G' /srv/vfx; stat -c '%U %a' /srv/vfx/touched; ls /srv/vfx/made; stat -c %s /srv/vfx/payload.bin"); got != "ran\n2775 vfx\nartist 600\n/srv/vfx/made\n80000\n" {
			t.Errorf("%s: /srv/vfx %q", h.Name, got)
		}
		if left := mustExec(t, h, "ls -a /etc /etc/sudoers.d | grep -c studiorun || true"); strings.TrimSpace(left) != "0" {
			t.Errorf("%s: temporary files left: %s", h.Name, left)
		}
	}

	// The second run changes nothing.
	start = time.Now()
	changes, out, err = p.run(plan, opts, false)
	if err != nil {
		t.Fatalf("second plan: %v\n%s", err, out)
	}
	t.Logf("no-op plan: %s", time.Since(start))
	if n := counts(changes); len(plan.Resources) != n[apply.NoOp] {
		t.Errorf("second run: %v, want all %d no-op", n, len(plan.Resources))
	}

	// Become through sudo: ops logs in with the key and sudo -n.
	second := p.eval(addrsScript(hosts[:1], `
h = ssh.host("asops", ADDRS[0], user = "ops", key = KEY, become = True)
h.copy("/etc/as-ops", content = "by ops\n", mode = 0o600)
h.command("id -u", name = "whoami")
`, ""))
	_, out, err = p.run(second, opts, true)
	if err != nil {
		t.Fatalf("up as ops with become: %v\n%s", err, out)
	}
	if got := mustExec(t, hosts[0], "stat -c '%U %a' /etc/as-ops; cat /etc/as-ops"); got != "root 600\nby ops\n" {
		t.Errorf("as-ops: %q", got)
	}
}

func TestHostKeysAreChecked(t *testing.T) {
	hosts := sshtest.Hosts(t, 1)
	h := hosts[0]
	p := newProject(t, nil)
	plan := p.eval(addrsScript(hosts, `h = ssh.host("k", ADDRS[0], key = KEY)
h.file("/tmp", state = "directory")`, ""))

	empty := filepath.Join(t.TempDir(), "known_hosts")
	_, _, err := p.run(plan, ssh.Options{KnownHosts: empty}, false)
	if err == nil || !strings.Contains(err.Error(), "unknown") || !strings.Contains(err.Error(), "--accept-new-host-keys") {
		t.Fatalf("unknown key: got %v, want a refusal", err)
	}
	if _, _, err := p.run(plan, ssh.Options{KnownHosts: empty, AcceptNewHostKeys: true}, false); err != nil {
		t.Fatalf("accept new key: %v", err)
	}
	data, _ := os.ReadFile(empty)
	if strings.TrimSpace(string(data)) != strings.TrimSpace(h.KnownHostsLine) {
		t.Errorf("known_hosts after accepting: %q, want %q", data, h.KnownHostsLine)
	}
	old := xssh.FingerprintSHA256(h.HostKey)
	if err := h.ChangeHostKey(); err != nil {
		t.Fatal(err)
	}
	_, _, err = p.run(plan, ssh.Options{KnownHosts: empty, AcceptNewHostKeys: true}, false)
	if err == nil || !strings.Contains(err.Error(), "CHANGED") || !strings.Contains(err.Error(), old) || !strings.Contains(err.Error(), xssh.FingerprintSHA256(h.HostKey)) {
		t.Fatalf("changed key: got %v, want a refusal showing %s and %s", err, old, xssh.FingerprintSHA256(h.HostKey))
	}
}

func TestAHostThatGoesDownFailsAlone(t *testing.T) {
	hosts := sshtest.Hosts(t, 2)
	p := newProject(t, nil)
	plan := p.eval(addrsScript(hosts, `
for i, addr in enumerate(ADDRS):
    h = ssh.host("t%d" % i, addr, key = KEY)
    h.file("/srv/a", state = "directory")
    h.file("/srv/b", state = "directory")
`, ""))
	var out bytes.Buffer
	e, done := testEngine(t, p.root, ssh.Options{KnownHosts: knownHosts(t, hosts...), ConnectTimeout: 3 * time.Second}, &out)
	defer done()
	changes, err := e.Plan(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := hosts[1].Stop(); err != nil {
		t.Fatal(err)
	}
	err = e.Apply(context.Background(), changes)
	if err == nil {
		t.Fatalf("apply with t1 down succeeded\n%s", out.String())
	}
	if strings.Contains(err.Error(), ".t0:") {
		t.Errorf("t0 failed too: %v", err)
	}
	if !strings.Contains(err.Error(), ".t1:") {
		t.Errorf("the error does not name t1: %v", err)
	}
	if got := mustExec(t, hosts[0], "ls -d /srv/a /srv/b"); got != "/srv/a\n/srv/b\n" {
		t.Errorf("t0: %q", got)
	}
}

func TestNFSInCheckMode(t *testing.T) {
	hosts := sshtest.Hosts(t, 1)
	p := newProject(t, nil)
	// The test hosts run no systemd: an export, which needs its service,
	// is refused with that reason; a mount is checked.
	plan := p.eval(addrsScript(hosts, `
h = ssh.host("nfs", ADDRS[0], key = KEY)
nfs.mount(h, server = "10.77.0.250", export = "/srv/nfs/vfx", path = "/vfx")
`, ""))
	kh := knownHosts(t, hosts...)
	changes, out, err := p.run(plan, ssh.Options{KnownHosts: kh}, false)
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	if n := counts(changes); n[apply.Update] != 1 {
		t.Errorf("changes %v, want the mount to update", n)
	}
	if got := mustExec(t, hosts[0], "ls -d /vfx 2>&1 || true"); !strings.Contains(got, "No such file") {
		t.Errorf("check mode made the mount point: %q", got)
	}
	export := p.eval(addrsScript(hosts, `
h = ssh.host("nfs", ADDRS[0], key = KEY)
nfs.export(h, "/srv/nfs/vfx", clients = "10.77.0.0/24")
`, ""))
	_, _, err = p.run(export, ssh.Options{KnownHosts: kh}, false)
	if err == nil || !strings.Contains(err.Error(), "ssh.host.nfs: service nfs-kernel-server: the host does not run systemd") {
		t.Errorf("export on a host without systemd: got %v", err)
	}
}

// secrets is a SecretSource for tests.
type secrets map[string]string

func (s secrets) LookupSecret(name string) (string, bool) { v, ok := s[name]; return v, ok }

func TestBecomeWithAPasswordAndSecretsNeverShow(t *testing.T) {
	hosts := sshtest.Hosts(t, 1)
	h := hosts[0]
	pub := pubKeyOf(t, h)
	mustExec(t, h, `useradd -m -s /bin/sh pw && echo 'pw:Sudo-Pa55' | chpasswd && echo 'pw ALL=(ALL) ALL' > /etc/sudoers.d/pw && chmod 440 /etc/sudoers.d/pw &&
mkdir -p /home/pw/.ssh && echo '`+pub+`' > /home/pw/.ssh/authorized_keys && chown -R pw /home/pw/.ssh && chmod 700 /home/pw/.ssh`)
	p := newProject(t, nil)
	path := filepath.Join(p.root, "servers.star")
	os.WriteFile(path, []byte(addrsScript(hosts, `
h = ssh.host("pw", ADDRS[0], user = "pw", key = KEY, become = True, become_password = secret("sudo"))
h.copy("/etc/token", content = secret("token"), mode = 0o600)
h.copy("/etc/sudoers.d/broken", content = secret("token"), mode = 0o440, validate = "visudo -cf %s")
`, "")), 0o644)
	plan, err := runtime.Eval(runtime.Options{Script: path, Modules: starlark.StringDict{"ssh": ssh.Module, "nfs": nfs.Module},
		Secrets: secrets{"sudo": "Sudo-Pa55", "token": "T0ken-Value-42\n"}})
	if err != nil {
		t.Fatal(err)
	}
	_, out, err := p.run(plan, ssh.Options{KnownHosts: knownHosts(t, h)}, true)
	if err == nil || !strings.Contains(err.Error(), "visudo") {
		t.Fatalf("a sudoers file that visudo refuses was applied: %v\n%s", err, out)
	}
	all := out + err.Error()
	for _, s := range []string{"Sudo-Pa55", "T0ken-Value-42"} {
		if strings.Contains(all, s) {
			t.Errorf("the output shows a secret:\n%s", all)
		}
	}
	if got := mustExec(t, h, "stat -c '%U %a' /etc/token; cat /etc/token; ls /etc/sudoers.d"); got != "root 600\nT0ken-Value-42\nREADME\npw\n" && got != "root 600\nT0ken-Value-42\npw\n" {
		t.Errorf("got %q", got)
	}
}

func TestProvisionAppliesABuildHostsTasks(t *testing.T) {
	hosts := sshtest.Hosts(t, 1)
	h := hosts[0]
	p := newProject(t, nil)
	path := filepath.Join(p.root, "servers.star")
	os.WriteFile(path, []byte(fmt.Sprintf(`
load("//stdlib/roles/ops_user.star", "ops_user")
host = build_host("soe-build", %q)
ops_user(host, public_key = %q)
`, h.KeyPath, pubKeyOf(t, h))), 0o644)
	buildHost := starlark.NewBuiltin("build_host", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name, key string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "key", &key); err != nil {
			return nil, err
		}
		return ssh.DeclareHost(thread, b.Name(), name, &ssh.HostSpec{User: "root", Key: key, BuildOf: "qemu.image.soe"})
	})
	plan, err := runtime.Eval(runtime.Options{Script: path, Modules: starlark.StringDict{"ssh": ssh.Module}, Extra: starlark.StringDict{"build_host": buildHost}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o := apply.NewOutput(&out, false)
	d := ssh.NewDriver(ssh.Options{KnownHosts: knownHosts(t, h), Out: o, ConnectTimeout: 5 * time.Second})
	defer d.Close()
	d.SetPlan(plan)
	for _, r := range plan.Resources {
		c, err := d.Diff(context.Background(), r, nil)
		if err != nil || c.Action != apply.NoOp {
			t.Fatalf("%s: %v %v: the tasks of a build host run in the image build", r.Address, c, err)
		}
	}
	if err := d.Provision(context.Background(), "ssh.host.soe-build", h.Address, h.Port, o); err != nil {
		t.Fatalf("provision: %v\n%s", err, out.String())
	}
	if got := mustExec(t, h, "id -nG ops"); !strings.Contains(got, "sudo") {
		t.Errorf("ops: %q", got)
	}
	if n := strings.Count(out.String(), ": changed\n"); n != 3 {
		t.Errorf("first provision: %d changed, want 3:\n%s", n, out.String())
	}
	out.Reset()
	if err := d.Provision(context.Background(), "ssh.host.soe-build", h.Address, h.Port, o); err != nil {
		t.Fatalf("second provision: %v", err)
	}
	if n := strings.Count(out.String(), ": ok\n"); n != 3 {
		t.Errorf("second provision: %d ok, want 3:\n%s", n, out.String())
	}
}

func TestWaitingForSSH(t *testing.T) {
	hosts := sshtest.Hosts(t, 1)
	h := hosts[0]
	p := newProject(t, nil)
	plan := p.eval(addrsScript(hosts, `h = ssh.host("late", ADDRS[0], key = KEY)
h.file("/tmp", state = "directory")`, ""))
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(2 * time.Second)
		h.Start()
	}()
	_, out, err := p.run(plan, ssh.Options{KnownHosts: knownHosts(t, h), ConnectTimeout: 30 * time.Second}, false)
	if err != nil {
		t.Fatalf("plan of a host that comes up late: %v", err)
	}
	if !strings.Contains(out, "waiting for SSH") {
		t.Errorf("no waiting note:\n%s", out)
	}
	_, _, err = p.run(plan, ssh.Options{KnownHosts: knownHosts(t, h), ConnectTimeout: time.Second}, false)
	if err != nil {
		t.Fatalf("second plan: %v", err)
	}
}

// BenchmarkSixTasks applies issue 4's six tasks (ops user, exclusive
// authorized key, validated sudoers file, /vfx directory, an fstab line, a
// package check) to fresh test hosts, then again as a no-op:
//
//	go test ./builtins/ssh -run '^$' -bench SixTasks -benchtime 1x
func BenchmarkSixTasks(b *testing.B) {
	for _, n := range benchHosts() {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				hosts := sshtest.Hosts(b, n)
				root := b.TempDir()
				os.MkdirAll(filepath.Join(root, ".studiorun"), 0o755)
				script := addrsScript(hosts, `
load("//stdlib/roles/ops_user.star", "ops_user")
for i, addr in enumerate(ADDRS):
    h = ssh.host("h%d" % i, addr, key = KEY, become = True)
    ops_user(h, public_key = PUB)
    h.file("/vfx", state = "directory", mode = 0o755)
    h.line_in_file("/etc/fstab", line = "tmpfs /scratch tmpfs defaults 0 0")
    h.package(["sudo"])
`, fmt.Sprintf("PUB = %q", strings.TrimSpace(string(xssh.MarshalAuthorizedKey(hosts[0].Signer.PublicKey())))))
				path := filepath.Join(root, "servers.star")
				os.WriteFile(path, []byte(script), 0o644)
				plan, err := runtime.Eval(runtime.Options{Script: path, Modules: starlark.StringDict{"ssh": ssh.Module}})
				if err != nil {
					b.Fatal(err)
				}
				var lines []string
				for _, h := range hosts {
					lines = append(lines, h.KnownHostsLine)
				}
				kh := filepath.Join(b.TempDir(), "known_hosts")
				os.WriteFile(kh, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
				up := func() (time.Duration, *apply.Changes) {
					start := time.Now()
					e, done := testEngine(b, root, ssh.Options{KnownHosts: kh}, io.Discard)
					defer done()
					c, err := e.Plan(context.Background(), plan)
					if err != nil {
						b.Fatal(err)
					}
					if err := e.Apply(context.Background(), c); err != nil {
						b.Fatal(err)
					}
					return time.Since(start), c
				}
				b.StartTimer()
				first, _ := up()
				noop, c := up()
				b.StopTimer()
				if !c.Empty() {
					b.Errorf("second run: %v", c.Counts())
				}
				b.ReportMetric(first.Seconds(), "s/first")
				b.ReportMetric(noop.Seconds(), "s/noop")
			}
		})
	}
}

// benchHosts are the host counts of BenchmarkSixTasks: 10 and 30, or
// STUDIORUN_BENCH_HOSTS.
func benchHosts() []int {
	var n int
	if _, err := fmt.Sscan(os.Getenv("STUDIORUN_BENCH_HOSTS"), &n); err == nil && n > 0 {
		return []int{n}
	}
	return []int{10, 30}
}

func TestATaskFailureStopsItsHostsLaterTasksInScriptOrder(t *testing.T) {
	hosts := sshtest.Hosts(t, 2)
	p := newProject(t, nil)
	// On t0 the command fails: the directory after it is not made, though
	// the chain to it passes a task with nothing to do (the package).
	plan := p.eval(addrsScript(hosts, `
for i, addr in enumerate(ADDRS):
    h = ssh.host("t%d" % i, addr, key = KEY)
    h.file("/srv/first", state = "directory")
    h.command(["sh", "-c", "test -d /srv/first && test %d = 1" % i], name = "check")
    h.package(["sudo"])
    h.file("/srv/after", state = "directory")
`, ""))
	_, out, err := p.run(plan, ssh.Options{KnownHosts: knownHosts(t, hosts...)}, true)
	if err == nil || !strings.Contains(err.Error(), "ssh.command.t0:check") || strings.Contains(err.Error(), ".t1:") {
		t.Fatalf("got %v, want t0's command alone to fail\n%s", err, out)
	}
	if got, _ := hosts[0].Exec("ls -d /srv/first /srv/after 2>/dev/null"); got != "/srv/first\n" {
		t.Errorf("t0: %q, want /srv/first only", got)
	}
	if got := mustExec(t, hosts[1], "ls -d /srv/first /srv/after"); got != "/srv/after\n/srv/first\n" && got != "/srv/first\n/srv/after\n" {
		t.Errorf("t1: %q", got)
	}
}

// sudoUser makes a user of the host that logs in with the test key and
// becomes root with sudo: without a password, or with password when it
// is not "".
func sudoUser(t *testing.T, h sshtest.Host, name, password string) {
	t.Helper()
	rule, setPw := name+" ALL=(ALL) NOPASSWD: ALL", ""
	if password != "" {
		rule, setPw = name+" ALL=(ALL) ALL", fmt.Sprintf(" && echo '%s:%s' | chpasswd", name, password)
	}
	mustExec(t, h, fmt.Sprintf(`useradd -m -s /bin/sh %[1]s%[2]s && echo '%[3]s' > /etc/sudoers.d/%[1]s && chmod 440 /etc/sudoers.d/%[1]s &&
mkdir -p /home/%[1]s/.ssh && echo '%[4]s' > /home/%[1]s/.ssh/authorized_keys && chown -R %[1]s /home/%[1]s/.ssh && chmod 700 /home/%[1]s/.ssh`,
		name, setPw, rule, pubKeyOf(t, h)))
}

// randomFile writes n pseudo-random bytes (seeded by name) to dir and
// returns their sha256.
func randomFile(t testing.TB, dir, name string, n int) string {
	t.Helper()
	data := make([]byte, n)
	x := uint64(len(name)) + 0x9e3779b97f4a7c15
	for i := range data {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		data[i] = byte(x)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func TestUploadOverSFTPThroughSudo(t *testing.T) {
	hosts := sshtest.Hosts(t, 1)
	h := hosts[0]
	sudoUser(t, h, "ops", "")
	sudoUser(t, h, "pw", "Sudo-Pa55")
	p := newProject(t, nil)
	bigSum := randomFile(t, p.root, "big.bin", 12<<20+12345)
	pwSum := randomFile(t, p.root, "pw.bin", 3<<20)
	kh := knownHosts(t, h)
	path := filepath.Join(p.root, "servers.star")
	os.WriteFile(path, []byte(addrsScript(hosts, `
ops = ssh.host("ops", ADDRS[0], user = "ops", key = KEY, become = True)
ops.upload("big.bin", "/srv/data/big.bin", mode = 0o640, owner = "root", group = "root")
pw = ssh.host("pw", ADDRS[0], user = "pw", key = KEY, become = True, become_password = secret("sudo"))
pw.upload("pw.bin", "/srv/pw/pw.bin", mode = 0o600)
`, "")), 0o644)
	plan, err := runtime.Eval(runtime.Options{Script: path, Modules: starlark.StringDict{"ssh": ssh.Module}, Secrets: secrets{"sudo": "Sudo-Pa55"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, out, err := p.run(plan, ssh.Options{KnownHosts: kh}, true)
	if err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	t.Logf("up of two uploads (12 and 3 MiB) over SFTP through sudo: %s", time.Since(start))
	if strings.Contains(out, "no SFTP") || !strings.Contains(out, "upload big.bin") || strings.Contains(out, "Sudo-Pa55") {
		t.Errorf("want SFTP with progress, no secret:\n%s", out)
	}
	want := fmt.Sprintf("root root 640 %s\nroot root 600 %s\n", bigSum, pwSum)
	got := mustExec(t, h, "for f in /srv/data/big.bin /srv/pw/pw.bin; do echo $(stat -c '%U %G %a' $f) $(sha256sum < $f | cut -d' ' -f1); done")
	if got != want {
		t.Errorf("on the host:\n%s\nwant:\n%s", got, want)
	}
	if left := mustExec(t, h, "ls -a /srv/data /srv/pw | grep -c studiorun || true"); strings.TrimSpace(left) != "0" {
		t.Errorf("temporary files left: %s", left)
	}

	changes, out, err := p.run(plan, ssh.Options{KnownHosts: kh}, true)
	if err != nil {
		t.Fatalf("second up: %v\n%s", err, out)
	}
	if n := counts(changes); n[apply.NoOp] != len(plan.Resources) {
		t.Errorf("second up: %v, want all %d unchanged", n, len(plan.Resources))
	}
}

func TestAFailedUploadLeavesNothing(t *testing.T) {
	hosts := sshtest.Hosts(t, 1)
	h := hosts[0]
	sudoUser(t, h, "ops", "")
	mustExec(t, h, "mkdir -p /srv/gone /srv/kept")
	p := newProject(t, nil)
	randomFile(t, p.root, "a.bin", 2<<20)
	kh := knownHosts(t, h)

	// The destination's directory goes away between check and apply.
	plan := p.eval(addrsScript(hosts, `
h = ssh.host("t0", ADDRS[0], user = "ops", key = KEY, become = True)
h.upload("a.bin", "/srv/gone/a.bin")
`, ""))
	func() {
		var out bytes.Buffer
		e, done := testEngine(t, p.root, ssh.Options{KnownHosts: kh}, &out)
		defer done()
		changes, err := e.Plan(context.Background(), plan)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, h, "rmdir /srv/gone")
		err = e.Apply(context.Background(), changes)
		t.Logf("directory gone: %v", err)
		if err == nil || !strings.Contains(err.Error(), "t0:/srv/gone/a.bin") || !strings.Contains(err.Error(), "directory /srv/gone does not exist") {
			t.Errorf("upload to a directory that went away: got %v, want an error naming the host, path and directory\n%s", err, out.String())
		}
	}()

	// The file is written, then its install fails (no such owner): the
	// temporary file is removed, the destination not made.
	plan = p.eval(addrsScript(hosts, `
h = ssh.host("t0", ADDRS[0], user = "ops", key = KEY, become = True)
h.upload("a.bin", "/srv/kept/a.bin", owner = "nobody-here")
`, ""))
	_, stdout, err := p.run(plan, ssh.Options{KnownHosts: kh}, true)
	t.Logf("missing owner: %v", err)
	if err == nil || !strings.Contains(err.Error(), "nobody-here") {
		t.Errorf("upload owned by a missing user: got %v\n%s", err, stdout)
	}
	if got := mustExec(t, h, "ls -A /srv/kept /srv | tr '\\n' ' '"); got != "/srv: kept  /srv/kept: " {
		t.Errorf("left on the host: %q", got)
	}
}

func TestUploadWithoutSFTPStreams(t *testing.T) {
	hosts := sshtest.Hosts(t, 1)
	h := hosts[0]
	sudoUser(t, h, "ops", "")
	mustExec(t, h, "rm /usr/lib/openssh/sftp-server")
	p := newProject(t, nil)
	sum := randomFile(t, p.root, "s.bin", 5<<20)
	kh := knownHosts(t, h)
	for _, tc := range []struct{ name, host, note string }{
		{"become", `ssh.host("ops", ADDRS[0], user = "ops", key = KEY, become = True)`, "no sftp-server program on the host to run through sudo"},
		{"root", `ssh.host("root", ADDRS[0], key = KEY)`, "the sftp subsystem did not start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := p.eval(addrsScript(hosts, "h = "+tc.host+"\nh.upload(\"s.bin\", \"/srv/"+tc.name+"/s.bin\", mode = 0o644)\n", ""))
			_, out, err := p.run(plan, ssh.Options{KnownHosts: kh}, true)
			if err != nil {
				t.Fatalf("up: %v\n%s", err, out)
			}
			if !strings.Contains(out, "upload streamed on the script's stdin: no SFTP ("+tc.note) {
				t.Errorf("no note of the fallback (%s):\n%s", tc.note, out)
			}
			got := mustExec(t, h, "stat -c '%U %a' /srv/"+tc.name+"/s.bin; sha256sum < /srv/"+tc.name+"/s.bin | cut -d' ' -f1; ls -a /srv/"+tc.name+" | grep -c studiorun || true")
			if want := "root 644\n" + sum + "\n0\n"; got != want {
				t.Errorf("on the host: %q, want %q", got, want)
			}
		})
	}
}

// BenchmarkUpload uploads a 64 MiB file to a test host over SFTP, and
// streamed on the script's stdin (the host's sftp-server removed), with
// the whole run (connect, facts, check, transfer, install) timed:
//
//	go test ./builtins/ssh -run '^$' -bench Upload -benchtime 3x
func BenchmarkUpload(b *testing.B) {
	hosts := sshtest.Hosts(b, 2)
	mustExec(b, hosts[1], "rm /usr/lib/openssh/sftp-server")
	root := b.TempDir()
	os.MkdirAll(filepath.Join(root, ".studiorun"), 0o755)
	randomFile(b, root, "big.bin", 64<<20)
	var lines []string
	for _, h := range hosts {
		lines = append(lines, h.KnownHostsLine)
	}
	kh := filepath.Join(b.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	for i, transport := range []string{"sftp", "stream"} {
		h := hosts[i]
		b.Run("transport="+transport, func(b *testing.B) {
			path := filepath.Join(root, "servers.star")
			os.WriteFile(path, []byte(addrsScript(hosts[i:i+1], `
h = ssh.host("b", ADDRS[0], key = KEY)
h.upload("big.bin", "/srv/big.bin")
`, "")), 0o644)
			plan, err := runtime.Eval(runtime.Options{Script: path, Modules: starlark.StringDict{"ssh": ssh.Module}})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(64 << 20)
			for range b.N {
				b.StopTimer()
				if _, err := h.Exec("rm -f /srv/big.bin"); err != nil {
					b.Fatal(err)
				}
				var out bytes.Buffer
				e, done := testEngine(b, root, ssh.Options{KnownHosts: kh}, &out)
				b.StartTimer()
				c, err := e.Plan(context.Background(), plan)
				if err == nil {
					err = e.Apply(context.Background(), c)
				}
				b.StopTimer()
				done()
				if err != nil {
					b.Fatalf("%v\n%s", err, out.String())
				}
				if streamed := strings.Contains(out.String(), "no SFTP"); streamed != (transport == "stream") {
					b.Fatalf("transport %s, streamed %v:\n%s", transport, streamed, out.String())
				}
			}
		})
	}
}
