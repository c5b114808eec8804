package ssh

import (
	"fmt"
	"strings"

	"github.com/studiorun/studiorun/runtime/apply"
)

// passwd is a user's /etc/passwd entry as the check printed it.
type passwd struct {
	name, home, shell string
	groups            []string
}

func (p Probe) user() (passwd, bool) {
	line, ok := p["passwd"]
	if !ok {
		return passwd{}, false
	}
	f := strings.Split(line, ":")
	if len(f) < 7 {
		return passwd{}, false
	}
	u := passwd{name: f[0], home: f[5], shell: f[6]}
	if g := p["groups"]; g != "" {
		u.groups = strings.Split(g, ",")
	}
	return u, true
}

func decideUser(t *User, f *HostFacts, p Probe) (*Decision, error) {
	var groups []string
	for _, g := range t.Groups {
		name, err := f.Resolve(g)
		if err != nil {
			return nil, err
		}
		groups = append(groups, name)
	}
	u, exists := p.user()
	if t.State == "absent" {
		if !exists {
			return noop("user " + t.Name + " is absent"), nil
		}
		d := &Decision{}
		d.attr("state", "present", "absent")
		d.Script.Cmd("userdel", t.Name)
		return d, nil
	}
	if !exists {
		d := &Decision{Action: apply.Create}
		argv := []string{"useradd"}
		if t.System {
			argv = append(argv, "-r")
		} else {
			argv = append(argv, "-m")
		}
		d.Attrs = append(d.Attrs, apply.AttrChange{Name: "name", New: t.Name})
		if t.Shell != "" {
			argv = append(argv, "-s", t.Shell)
			d.Attrs = append(d.Attrs, apply.AttrChange{Name: "shell", New: t.Shell})
		}
		if t.Home != "" {
			argv = append(argv, "-d", t.Home)
			d.Attrs = append(d.Attrs, apply.AttrChange{Name: "home", New: t.Home})
		}
		if len(groups) > 0 {
			argv = append(argv, "-G", joinList(groups))
			d.Attrs = append(d.Attrs, apply.AttrChange{Name: "groups", New: joinList(groups)})
		}
		d.Script.Cmd(append(argv, t.Name)...)
		return d, nil
	}
	d := noop("user " + t.Name + " exists as declared")
	if t.Shell != "" && u.shell != t.Shell {
		d.attr("shell", u.shell, t.Shell)
		d.Script.Cmd("usermod", "-s", t.Shell, t.Name)
	}
	if t.Home != "" && u.home != t.Home {
		d.attr("home", u.home, t.Home)
		d.Script.Cmd("usermod", "-d", t.Home, "-m", t.Name)
	}
	have := map[string]bool{}
	for _, g := range u.groups {
		have[g] = true
	}
	var missing []string
	for _, g := range groups {
		if !have[g] {
			missing = append(missing, g)
		}
	}
	if len(missing) > 0 {
		d.attr("groups", joinList(u.groups), joinList(append(append([]string{}, u.groups...), missing...)))
		d.Script.Cmd("usermod", "-a", "-G", joinList(missing), t.Name)
	}
	return d, nil
}

func decideGroup(t *GroupSpec, p Probe) *Decision {
	exists := p.Has("exists")
	switch {
	case t.State == "absent" && exists:
		d := &Decision{}
		d.attr("state", "present", "absent")
		d.Script.Cmd("groupdel", t.Name)
		return d
	case t.State == "absent":
		return noop("group " + t.Name + " is absent")
	case exists:
		return noop("group " + t.Name + " exists")
	}
	d := &Decision{Action: apply.Create, Attrs: []apply.AttrChange{{Name: "name", New: t.Name}}}
	if t.System {
		d.Script.Cmd("groupadd", "-r", t.Name)
	} else {
		d.Script.Cmd("groupadd", t.Name)
	}
	return d
}

// keyID is the type and data of an authorized_keys line, without its
// options and comment.
func keyID(line string) string {
	fields := strings.Fields(line)
	for i, f := range fields {
		if publicKeyTypes[f] && i+1 < len(fields) {
			return f + " " + fields[i+1]
		}
	}
	return ""
}

func decideAuthorizedKey(t *AuthorizedKey, p Probe) (*Decision, error) {
	u, exists := p.user()
	if !exists {
		d := &Decision{Action: apply.Create, Pending: fmt.Sprintf("user %s does not exist (yet: an earlier task may create it)", t.User)}
		d.Attrs = append(d.Attrs, apply.AttrChange{Name: "keys", New: fmt.Sprintf("%d key(s)", len(t.Keys)), Note: "user " + t.User + " does not exist yet"})
		return d, nil
	}
	old, _, err := p.Content("content")
	if err != nil {
		return nil, err
	}
	if p.Has("content_too_large") {
		return nil, fmt.Errorf("%s/.ssh/authorized_keys is larger than 256 KiB", u.home)
	}
	var want string
	if t.Exclusive {
		want = strings.Join(t.Keys, "\n") + "\n"
	} else {
		have := map[string]bool{}
		for _, l := range strings.Split(old, "\n") {
			if id := keyID(l); id != "" {
				have[id] = true
			}
		}
		want = old
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		for _, k := range t.Keys {
			if !have[keyID(k)] {
				want += k + "\n"
				have[keyID(k)] = true
			}
		}
	}
	fs := p.file()
	dir := Probe{"type": p["dir_type"], "mode": p["dir_mode"], "owner": p["dir_owner"], "group": p["dir_group"]}.file()
	d := noop("the keys of " + t.User + " are authorized")
	sshDir := u.home + "/.ssh"
	file := sshDir + "/authorized_keys"
	if !dir.Exists {
		d.attr("dir", "", sshDir)
		d.Script.Cmd("mkdir", "-p", sshDir)
		d.Script.Cmd("chown", t.User, sshDir)
		d.Script.Cmd("chmod", "0700", sshDir)
	} else {
		ownershipDiff(d, sshDir, resolvedOwnership{Mode: "0700", Owner: t.User}, dir, true)
	}
	if !fs.Exists || old != want {
		if !fs.Exists {
			d.Action = apply.Create
		}
		d.change(ContentChange("authorized_keys", file, old, want))
		d.Stdin = []byte(want)
		d.Script.Append(writeFileScript(file, resolvedOwnership{Mode: "0600", Owner: t.User}, "", false))
	} else {
		ownershipDiff(d, file, resolvedOwnership{Mode: "0600", Owner: t.User}, fs, true)
	}
	return d, nil
}
