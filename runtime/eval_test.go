package runtime

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// testModule declares "test.thing" resources: thing(name, secret=None, after=None).
var testModule = &starlarkstruct.Module{Name: "test", Members: starlark.StringDict{
	"thing": starlark.NewBuiltin("test.thing", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		var secret, after starlark.Value = starlark.None, starlark.None
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "secret?", &secret, "after?", &after); err != nil {
			return nil, err
		}
		spec := &thingSpec{}
		if s, ok := secret.(Secret); ok {
			spec.Secret = &s
		}
		var deps []Address
		if after != starlark.None {
			r, err := UnpackRef(b.Name(), "after", after, "test.thing")
			if err != nil {
				return nil, err
			}
			deps = append(deps, r.Address)
		}
		r, err := Declare(thread, b.Name(), name, spec, deps...)
		if err != nil {
			return nil, err
		}
		return NewRef(r), nil
	}),
}}

type thingSpec struct {
	Secret *Secret `json:"secret,omitempty"`
}

func (*thingSpec) Kind() string { return "test.thing" }

// project writes files into a new project folder (marked by .studiorun/).
func project(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	files[".studiorun/.keep"] = ""
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func render(t *testing.T, opts Options) (string, string) {
	t.Helper()
	opts.Modules = starlark.StringDict{"test": testModule}
	plan, err := Eval(opts)
	if err != nil {
		t.Fatal(err)
	}
	var text, js bytes.Buffer
	if err := plan.RenderText(&text); err != nil {
		t.Fatal(err)
	}
	if err := plan.RenderJSON(&js); err != nil {
		t.Fatal(err)
	}
	return text.String(), js.String()
}

func TestPlanIsTheSameFromAnyWorkingDirectory(t *testing.T) {
	root := project(t, map[string]string{
		"scripts/main.star": `load("//lib/names.star", "names")
n = var("n", 2)
prev = None
for name in names(n):
    prev = test.thing(name, after = prev)
`,
		"lib/names.star": "def names(n):\n    return ['host-%d' % i for i in range(n)]\n",
	})
	text1, json1 := render(t, Options{Script: filepath.Join(root, "scripts/main.star")})
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	if err := os.Chdir(filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}
	text2, json2 := render(t, Options{Script: "../scripts/main.star"})
	if text1 != text2 || json1 != json2 {
		t.Errorf("plans differ by working directory:\n%s\n---\n%s", text1, text2)
	}
	if strings.Contains(text1+json1, root) {
		t.Errorf("plan mentions the absolute project path %s", root)
	}
	if !strings.Contains(json1, `"script": "scripts/main.star"`) || !strings.Contains(json1, `"depends_on": [
        "test.thing.host-0"
      ]`) {
		t.Errorf("unexpected JSON plan:\n%s", json1)
	}
}

func TestSecretsNeverRender(t *testing.T) {
	root := project(t, map[string]string{
		"main.star": `pw = secret("root_password")
test.thing("a", secret = pw)
test.thing("b", secret = template("rootpw {{ .pw }}\nurl {{ .url }}\n", pw = pw, url = "http://mirror"))
print(pw, str(pw), "%s" % pw)
`,
	})
	var stderr bytes.Buffer
	text, js := render(t, Options{
		Script:  filepath.Join(root, "main.star"),
		Secrets: Secrets{File: map[string]string{"root_password": "hunter2"}},
		Stderr:  &stderr,
	})
	for _, out := range []string{text, js, stderr.String()} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret value shown:\n%s", out)
		}
	}
	if !strings.Contains(js, `"secret": "rootpw (secret)\nurl http://mirror\n"`) {
		t.Errorf("template with a secret should show (secret) in its place:\n%s", js)
	}
}

func TestSecretFromEnvironment(t *testing.T) {
	root := project(t, map[string]string{"main.star": `test.thing("a", secret = secret("root_password"))`})
	env := map[string]string{"STUDIORUN_SECRET_ROOT_PASSWORD": "from-env"}
	plan, err := Eval(Options{
		Script:  filepath.Join(root, "main.star"),
		Secrets: Secrets{Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }},
		Modules: starlark.StringDict{"test": testModule},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := plan.Resources[0].Spec.(*thingSpec).Secret.Reveal()
	if got != "from-env" {
		t.Errorf("Reveal() = %q", got)
	}
}

func TestVarFileAndVarFlags(t *testing.T) {
	root := project(t, map[string]string{
		"main.star": `n = var("n", 1)
names = var("names", ["a"])
on = var("on", False)
label = var("label", "x")
test.thing("%s-%d-%s-%s" % (label, n, "+".join(names), on))
`,
		"vars.json": `{"n": 3, "names": ["p", "q"], "label": "file"}`,
	})
	plan, err := Eval(Options{
		Script:  filepath.Join(root, "main.star"),
		VarFile: filepath.Join(root, "vars.json"),
		Vars:    []string{"label=flag", "on=true"},
		Modules: starlark.StringDict{"test": testModule},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Resources[0].Name; got != "flag-3-p+q-True" {
		t.Errorf("name = %q, want flag-3-p+q-True (--var wins over --var-file)", got)
	}
}

func TestProjectRoot(t *testing.T) {
	root := project(t, map[string]string{"a/b/main.star": ""})
	if got := ProjectRoot(filepath.Join(root, "a", "b")); got != root {
		t.Errorf("ProjectRoot = %s, want %s (the folder holding .studiorun)", got, root)
	}
	bare := t.TempDir()
	if got := ProjectRoot(bare); got != bare && !strings.HasPrefix(bare, got) {
		t.Errorf("ProjectRoot of an unmarked folder = %s, want %s", got, bare)
	}
}
