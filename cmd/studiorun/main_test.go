package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// studiorun runs the CLI in dir and returns its exit code and output.
func studiorun(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	if dir != "" {
		wd, _ := os.Getwd()
		if err := os.Chdir(dir); err != nil {
			t.Fatal(err)
		}
		defer os.Chdir(wd)
	}
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"studiorun"}, args...), &stdout, &stderr)
	if strings.Contains(stderr.String(), "goroutine ") || strings.Contains(stderr.String(), ".go:") {
		t.Errorf("a Go stack trace reached the user:\n%s", stderr.String())
	}
	return code, stdout.String(), stderr.String()
}

func projectRoot(t *testing.T) string {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestStudioPlanShowsTheArticlesHost(t *testing.T) {
	root := projectRoot(t)
	code, out, errOut := studiorun(t, root, "scripts/studio.star", "plan", "--offline")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`resource "libvirt.domain" "vfx-dev-001"`,
		`mac     = "02:00:00:00:00:01"`,
		`resource "libvirt.volume" "vfx-studio-soe_0.1.0.qcow2"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %s", want)
		}
	}
	// The same plan from another folder, through an absolute path.
	_, other, _ := studiorun(t, t.TempDir(), filepath.Join(root, "scripts/studio.star"), "plan", "--offline")
	if other != out {
		t.Errorf("plan differs when run from another folder")
	}
	_, three, _ := studiorun(t, root, "scripts/studio.star", "plan", "--offline", "--var", "dev_host_count=3")
	for _, want := range []string{`"vfx-dev-002"`, `"02:00:00:00:00:02"`, `"vfx-dev-003"`, `"02:00:00:00:00:03"`} {
		if !strings.Contains(three, want) {
			t.Errorf("dev_host_count=3 plan lacks %s", want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	root := projectRoot(t)
	bad := filepath.Join(root, "testdata/bad/rt_syntax_error.star")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stdout or stderr
	}{
		{"check ok", []string{"scripts/servers.star", "check"}, 0, "scripts/servers.star: ok"},
		{"verb first", []string{"check", "scripts/servers.star", "--var", "dev_host_count=2"}, 0, "ok"},
		{"script error", []string{bad, "check"}, 1, "testdata/bad/rt_syntax_error.star:4:2: got identifier, want ','"},
		{"unknown flag", []string{"scripts/studio.star", "plan", "--offlne"}, 2, "flag provided but not defined: -offlne"},
		{"unknown verb", []string{"scripts/studio.star", "apply"}, 2, "unknown verb"},
		{"no script", []string{"check"}, 2, "want one script"},
		{"unknown var", []string{"scripts/studio.star", "check", "--var", "dev_hosts=2"}, 1, `unknown var "dev_hosts" for scripts/studio.star: it declares bridge, dev_host_count, image_root, image_version, subnet`},
		{"up without a terminal", []string{"testdata/apply/empty.star", "up"}, 0, "No changes"},
		{"help", []string{"--help"}, 0, "studiorun SCRIPT VERB [flags]"},
		{"verb help", []string{"scripts/studio.star", "plan", "--help"}, 0, "--detailed-exitcode"},
		{"version", []string{"version"}, 0, "studiorun "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := studiorun(t, root, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(out+errOut, tc.want) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tc.want, out, errOut)
			}
		})
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	root := projectRoot(t)
	t.Setenv("STUDIORUN_SECRET_ROOT_PASSWORD", "correct-horse-battery")
	for _, verb := range [][]string{{"plan", "--offline"}, {"plan", "--offline", "--json"}, {"graph"}, {"check"}} {
		code, out, errOut := studiorun(t, root, append([]string{"scripts/soe.star"}, verb...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", verb, code, errOut)
		}
		if strings.Contains(out+errOut, "correct-horse-battery") {
			t.Errorf("%v printed the secret", verb)
		}
	}
}

func TestGraphIsDOT(t *testing.T) {
	code, out, _ := studiorun(t, projectRoot(t), "scripts/studio.star", "graph")
	if code != 0 || !strings.HasPrefix(out, `digraph "scripts/studio.star" {`) ||
		!strings.Contains(out, `"libvirt.pool.studio" -> "libvirt.volume.vfx-studio-soe_0.1.0.qcow2";`) {
		t.Errorf("graph output:\n%s", out)
	}
}

func TestTestVerbRunsGoldenPlans(t *testing.T) {
	root := projectRoot(t)
	code, out, errOut := studiorun(t, root, "test", "testdata/plans")
	if code != 0 || !strings.Contains(out, "ok   testdata/plans/studio.golden") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	// A golden plan that no longer matches fails, and --update rewrites it.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".studiorun"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("fleet.star", `n = var("n", 1)
net = dhcp.hosts_file("lan", subnet = "10.0.0.0/24", path = "hosts")
for i in range(1, n + 1):
    dhcp.reservation(net, mac = dhcp.laa(i), ip = dhcp.ip("10.0.0.0/24", 10 + i), hostname = "h%d" % i)
`)
	write("fleet.golden", `{"script": "fleet.star", "vars": {"n": 2}, "resources": []}`)
	code, out, _ = studiorun(t, dir, "test")
	if code != 1 || !strings.Contains(out, "FAIL fleet.golden") {
		t.Fatalf("stale golden plan: exit %d\n%s", code, out)
	}
	if code, out, _ = studiorun(t, dir, "test", "--update"); code != 0 {
		t.Fatalf("--update: exit %d\n%s", code, out)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "fleet.golden"))
	if !strings.Contains(string(data), `"dhcp.reservation.h2"`) {
		t.Errorf("updated golden plan:\n%s", data)
	}
	if code, out, _ = studiorun(t, dir, "test"); code != 0 {
		t.Errorf("after --update: exit %d\n%s", code, out)
	}
}
