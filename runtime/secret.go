package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Secret is a value that must never be shown: plans, logs and state show
// its display form, "(secret)" for a secret() and the text with "(secret)"
// in place of each secret for a template() that used one. Only a driver
// asks for the value, with Reveal.
type Secret struct {
	shown string
	value string
}

var _ starlark.Value = Secret{}

// NewSecret returns a secret holding value, shown as "(secret)".
func NewSecret(value string) Secret { return Secret{shown: "(secret)", value: value} }

// Reveal returns the secret's value, for drivers to use and never to print.
func (s Secret) Reveal() string { return s.value }

// String returns the display form.
func (s Secret) String() string { return s.shown }

// Type returns "secret".
func (s Secret) Type() string { return "secret" }

// Freeze does nothing: a secret is immutable.
func (s Secret) Freeze() {}

// Truth reports whether the secret is non-empty.
func (s Secret) Truth() starlark.Bool { return s.value != "" }

// Hash fails: secrets are not dictionary keys.
func (s Secret) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: secret") }

// Binary fails for every operator, so that no expression turns a secret
// into a plain string that plans would show.
func (s Secret) Binary(op syntax.Token, y starlark.Value, side starlark.Side) (starlark.Value, error) {
	return nil, fmt.Errorf("a secret cannot be used with %s: pass it whole to an argument that takes secrets, or to template()", op)
}

// MarshalJSON writes the display form.
func (s Secret) MarshalJSON() ([]byte, error) { return encodeString(s.shown) }

// SecretSource finds the value of secret(name).
type SecretSource interface {
	LookupSecret(name string) (string, bool)
}

// SecretEnvVar returns the environment variable that holds secret name.
func SecretEnvVar(name string) string { return "STUDIORUN_SECRET_" + strings.ToUpper(name) }

var secretName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// secretBuiltin implements secret(name).
func secretBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name); err != nil {
		return nil, err
	}
	if !secretName.MatchString(name) {
		return nil, fmt.Errorf("secret: name %q: want lower-case letters, digits and _ (it becomes %s)", name, SecretEnvVar("NAME"))
	}
	ev := evaluationOf(thread)
	if ev.secrets != nil {
		if v, ok := ev.secrets.LookupSecret(name); ok {
			return NewSecret(v), nil
		}
	}
	return nil, fmt.Errorf("secret %q is not set: export %s or pass --secret-file", name, SecretEnvVar(name))
}

// Secrets finds secrets in a --secret-file's values first, then in the
// STUDIORUN_SECRET_<NAME> environment variables that getenv reads.
type Secrets struct {
	File   map[string]string
	Getenv func(string) (string, bool)
}

// LookupSecret implements SecretSource.
func (s Secrets) LookupSecret(name string) (string, bool) {
	if v, ok := s.File[name]; ok {
		return v, true
	}
	if s.Getenv != nil {
		return s.Getenv(SecretEnvVar(name))
	}
	return "", false
}

// ReadSecretFile reads a --secret-file: a JSON object of secret names to
// string values.
func ReadSecretFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret file: %w", err)
	}
	var values map[string]string
	if err := json.Unmarshal(data, &values); err != nil {
		// Say where, never what: the file's contents are secret.
		return nil, fmt.Errorf("secret file %s: want a JSON object of names to strings", path)
	}
	return values, nil
}

// TestSecrets stands in for every secret with a fixed value, so that golden
// plans and Starlark tests need no real secrets (plans never show them).
type TestSecrets struct{}

// LookupSecret implements SecretSource.
func (TestSecrets) LookupSecret(name string) (string, bool) { return "test-secret-" + name, true }
