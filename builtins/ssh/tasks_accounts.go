package ssh

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"

	"go.starlark.net/starlark"
)

// User is the spec of host.user: a local account. Groups are supplementary
// groups the user must be in (others are left alone).
type User struct {
	HostTask
	Name   string  `json:"name"`
	Shell  string  `json:"shell,omitempty"`
	Groups []Group `json:"groups"`
	Home   string  `json:"home,omitempty"`
	System bool    `json:"system"`
	State  string  `json:"state"`
}

// Kind implements runtime.Spec.
func (*User) Kind() string { return "ssh.user" }

func userTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var shell, home starlark.Value = starlark.None, starlark.None
	var groups starlark.Value = starlark.NewList(nil)
	spec := User{State: "present", Groups: []Group{}}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &spec.Name, "shell?", &shell, "groups?", &groups,
		"home?", &home, "system?", &spec.System, "state?", &spec.State); err != nil {
		return nil, err
	}
	c := TaskCall{Fn: b.Name(), Host: receiver(b), Identity: spec.Name}
	err := c.check(func() (err error) {
		if err = checkAccount("name", spec.Name); err != nil {
			return err
		}
		if spec.Shell, err = optPath("shell", shell); err != nil {
			return err
		}
		if spec.Home, err = optPath("home", home); err != nil {
			return err
		}
		list, ok := groups.(starlark.Indexable)
		if !ok || groups.Type() == "string" {
			return fmt.Errorf("groups: got %s, want a list of group names", groups.Type())
		}
		for i := 0; i < list.Len(); i++ {
			g, err := c.unpackGroup(fmt.Sprintf("groups[%d]", i), list.Index(i))
			if err != nil {
				return err
			}
			spec.Groups = append(spec.Groups, g)
		}
		return checkState(spec.State, "present", "absent")
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// GroupSpec is the spec of host.group: a local group.
type GroupSpec struct {
	HostTask
	Name   string `json:"name"`
	System bool   `json:"system"`
	State  string `json:"state"`
}

// Kind implements runtime.Spec.
func (*GroupSpec) Kind() string { return "ssh.group" }

func groupTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	spec := GroupSpec{State: "present"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &spec.Name, "system?", &spec.System, "state?", &spec.State); err != nil {
		return nil, err
	}
	c := TaskCall{Fn: b.Name(), Host: receiver(b), Identity: spec.Name}
	err := c.check(func() error {
		if err := checkAccount("name", spec.Name); err != nil {
			return err
		}
		return checkState(spec.State, "present", "absent")
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// AuthorizedKey is the spec of host.authorized_key: public keys in a user's
// ~/.ssh/authorized_keys; with Exclusive, the only ones.
type AuthorizedKey struct {
	HostTask
	User      string   `json:"user"`
	Keys      []string `json:"keys"`
	Exclusive bool     `json:"exclusive"`
}

// Kind implements runtime.Spec.
func (*AuthorizedKey) Kind() string { return "ssh.authorized_key" }

func authorizedKeyTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var key, name starlark.Value = nil, starlark.None
	var spec AuthorizedKey
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "user", &spec.User, "key", &key,
		"exclusive?", &spec.Exclusive, "name?", &name); err != nil {
		return nil, err
	}
	c, err := newCall(b, name, spec.User)
	if err != nil {
		return nil, err
	}
	err = c.check(func() error {
		if err := checkAccount("user", spec.User); err != nil {
			return err
		}
		texts, err := stringList("key", key)
		if err != nil {
			return err
		}
		spec.Keys, err = parsePublicKeys(strings.Join(texts, "\n"))
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// publicKeyTypes are the key types of OpenSSH's authorized_keys lines.
var publicKeyTypes = map[string]bool{
	"ssh-ed25519": true, "ssh-rsa": true, "ssh-dss": true,
	"ecdsa-sha2-nistp256": true, "ecdsa-sha2-nistp384": true, "ecdsa-sha2-nistp521": true,
	"sk-ssh-ed25519@openssh.com": true, "sk-ecdsa-sha2-nistp256@openssh.com": true,
}

// parsePublicKeys reads OpenSSH public keys, one per line (blank lines and
// # comments skipped), as authorized_keys holds them: optional options, the
// key type, the base64 key whose encoding names the same type, a comment.
func parsePublicKeys(text string) ([]string, error) {
	if strings.Contains(text, "PRIVATE KEY") {
		return nil, fmt.Errorf("key: this is a private key; pass the public key (the .pub file)")
	}
	var keys []string
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkPublicKey(line); err != nil {
			return nil, fmt.Errorf("key line %d: %w", n+1, err)
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key: no public key given")
	}
	return keys, nil
}

func checkPublicKey(line string) error {
	fields := strings.Fields(line)
	i := 0
	for i < len(fields) && !publicKeyTypes[fields[i]] {
		i++
	}
	if i == len(fields) || i+1 == len(fields) {
		return fmt.Errorf("not an OpenSSH public key: want a line such as \"ssh-ed25519 AAAA... ops@studio\"")
	}
	typ := fields[i]
	blob, err := base64.StdEncoding.DecodeString(fields[i+1])
	if err != nil || len(blob) < 4 {
		return fmt.Errorf("%s key: the key data is not valid base64", typ)
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(n) > uint64(len(blob)-4) || !bytes.Equal(blob[4:4+n], []byte(typ)) {
		return fmt.Errorf("%s key: the key data is not a %s key", typ, typ)
	}
	return nil
}
