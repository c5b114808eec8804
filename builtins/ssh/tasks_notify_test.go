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

// evalScript evaluates a script of the ssh module in a new project.
func evalScript(t *testing.T, script string) (*runtime.Plan, error) {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".studiorun"), 0o755)
	p := filepath.Join(dir, "servers.star")
	if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return runtime.Eval(runtime.Options{Script: p, Modules: starlark.StringDict{"ssh": Module}})
}

const notifyScript = `
h = ssh.host("vfx-dev-001", "172.16.0.11")
g = ssh.host("vfx-dev-002", "172.16.0.12")
h.copy("/etc/systemd/system/render-agent.service", content = "[Service]\n", name = "unit")
agent = h.service("render-agent", enabled = True, state = "started")
proxy = h.service("nginx", state = "started", on_notify = "reload")
h.copy("/etc/render-agent.conf", content = "a=1\n", notify = agent)
h.copy("/etc/nginx/conf.d/render.conf", content = "b=2\n", notify = [proxy, agent, proxy])
h.line_in_file("/etc/hosts", line = "10.0.0.1 render", notify = agent)
g.service("chronyd", state = "started")
`

func TestNotifyDeclaresHandlersLastOnTheirHost(t *testing.T) {
	plan, err := evalScript(t, notifyScript)
	if err != nil {
		t.Fatal(err)
	}
	agent := plan.Resource("ssh.handler.vfx-dev-001:render-agent")
	nginx := plan.Resource("ssh.handler.vfx-dev-001:nginx")
	if agent == nil || nginx == nil {
		t.Fatalf("no handlers in the plan")
	}
	attrs, _ := agent.Attributes()
	want := `{"host":"ssh.host.vfx-dev-001","service":"render-agent","action":"restart","notified_by":["ssh.copy.vfx-dev-001:/etc/render-agent.conf","ssh.copy.vfx-dev-001:/etc/nginx/conf.d/render.conf","ssh.line_in_file.vfx-dev-001:/etc/hosts"]}`
	if string(attrs) != want {
		t.Errorf("handler attributes\n got %s\nwant %s", attrs, want)
	}
	if h := nginx.Spec.(*Handler); h.Action != "reload" || len(h.NotifiedBy) != 1 {
		t.Errorf("nginx handler = %+v, want a reload notified by one task", h)
	}
	if agent.Pos.Line != 5 {
		t.Errorf("handler declared at %s, want the service's line 5", agent.Pos)
	}
	// The handlers come last on their host, in the order of their services.
	var order []runtime.Address
	for _, r := range plan.Resources {
		if t, ok := r.Spec.(Task); ok && t.TaskHost() == "ssh.host.vfx-dev-001" {
			order = append(order, r.Address)
		}
	}
	if n := len(order); order[n-2] != agent.Address || order[n-1] != nginx.Address {
		t.Errorf("host order %v: want the handlers last", order)
	}
	if !slices.Contains(agent.DependsOn, "ssh.line_in_file.vfx-dev-001:/etc/hosts") || !slices.Contains(nginx.DependsOn, agent.Address) {
		t.Errorf("dependencies: %v and %v", agent.DependsOn, nginx.DependsOn)
	}
	if plan.Resource("ssh.handler.vfx-dev-002:chronyd") != nil {
		t.Errorf("a handler for a service that nothing notifies")
	}
	// Same script, same plan.
	var a, b bytes.Buffer
	plan.RenderJSON(&a)
	again, _ := evalScript(t, notifyScript)
	again.RenderJSON(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("two evaluations differ")
	}
}

func TestNotifyErrors(t *testing.T) {
	const head = `
h = ssh.host("vfx-dev-001", "172.16.0.11")
g = ssh.host("vfx-dev-002", "172.16.0.12")
svc = h.service("render-agent", state = "started")
other = g.service("render-agent", state = "started")
f = h.file("/vfx", state = "directory")
`
	for _, c := range []struct{ call, want string }{
		{`h.copy("/etc/a", content = "", notify = "render-agent")`, `ssh.copy "vfx-dev-001:/etc/a": notify: got string, want a service task (the value host.service() returns) or a list of them`},
		{`h.copy("/etc/a", content = "", notify = f)`, `ssh.copy "vfx-dev-001:/etc/a": notify: got ssh.file.vfx-dev-001:/vfx, want a service task`},
		{`h.copy("/etc/a", content = "", notify = [svc, 1])`, `ssh.copy "vfx-dev-001:/etc/a": notify[1]: got int, want a service task`},
		{`h.copy("/etc/a", content = "", notify = other)`, `notify: ssh.service.vfx-dev-002:render-agent is a service of vfx-dev-002, not of vfx-dev-001`},
		{`h.copy("/etc/a", content = "", notify = [])`, `notify: the list is empty`},
		{`h.service("nginx", state = "started", on_notify = "bounce")`, `ssh.service "vfx-dev-001:nginx": on_notify "bounce": want "restart" or "reload"`},
	} {
		_, err := evalScript(t, head+c.call+"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.call, err, c.want)
		}
	}
}

func TestHandlerScript(t *testing.T) {
	s := HandlerScript(&Handler{Service: "nginx", Action: "reload"})
	want := "if [ \"$(systemctl show -p NeedDaemonReload --value nginx 2>/dev/null)\" = yes ]; then systemctl daemon-reload; fi\nsystemctl reload nginx"
	if got := strings.Join(s.Lines(), "\n"); got != want {
		t.Errorf("handler script\n got %s\nwant %s", got, want)
	}
}
