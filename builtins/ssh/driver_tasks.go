package ssh

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/studiorun/studiorun/runtime/apply"
)

// Decision is what a step would do, given the host's facts and state:
// nothing (NoOp), or the attributes that differ and the script that
// changes them.
type Decision struct {
	Action apply.Action
	Attrs  []apply.AttrChange
	// Why says why nothing changes ("user ops exists"), for tests and notes.
	Why    string
	Script Script
	Stdin  []byte // fed to the script (a file's content)
	// Upload is a local file that the driver puts on the host before the
	// script runs, for the script (uploadScript) to install.
	Upload *UploadFile
	// Pending is a prerequisite that does not exist yet (the user of an
	// authorized key): check mode reports the step as changing, with this
	// note; applying fails with it if it is still missing then.
	Pending string
	secret  bool
}

func (d *Decision) attr(name, old, new string) {
	d.change(apply.AttrChange{Name: name, Old: old, New: new})
}

func (d *Decision) note(name, note string) {
	d.change(apply.AttrChange{Name: name, Note: note})
}

// change records an attribute that differs: the task has something to do.
func (d *Decision) change(a apply.AttrChange) {
	d.Attrs = append(d.Attrs, a)
	if d.Action == apply.NoOp {
		d.Action = apply.Update
	}
}

func noop(why string) *Decision { return &Decision{Action: apply.NoOp, Why: why} }

// UploadFile is the file of an upload step: the driver writes Src to a
// temporary file beside Dest over SFTP, or streams it on the script's
// standard input when the host has no usable SFTP server.
type UploadFile struct {
	Src  string // the local file
	Dest string // its path on the host
	// MakeDir says that Dest's directory did not exist at check time: the
	// transport makes it first.
	MakeDir bool
}

// Composite is a task made of primitive steps: nfs.export and nfs.mount
// (package nfs) implement it, so that the ssh driver checks and applies
// them with its own tasks, in the same round trips.
type Composite interface {
	Task
	Steps(f *HostFacts) ([]Step, error)
}

// Step is one primitive task of a composite. With OnlyIfChanged, it runs
// only when one of those earlier steps (by index) changes, as a handler.
type Step struct {
	Label         string // names the step in attributes and errors
	Task          Task
	OnlyIfChanged []int
	// Fail is the error shown when the step's commands fail (naming, say,
	// the NFS server as well as the host); default "<label> failed".
	Fail string
}

// stepsOf returns the primitive steps of a task.
func stepsOf(t Task, f *HostFacts) ([]Step, error) {
	if _, ok := t.(*Handler); ok {
		return nil, nil // decided from the steps of the tasks that notify it
	}
	if c, ok := t.(Composite); ok {
		return c.Steps(f)
	}
	return []Step{{Task: t}}, nil
}

// ProbeScript returns the commands that print the state a primitive task
// needs.
func ProbeScript(t Task, f *HostFacts) (string, error) {
	var s Script
	switch t := t.(type) {
	case *User:
		s.Cmd("_user", t.Name)
	case *GroupSpec:
		s.Add("getent group " + Quote(t.Name) + " >/dev/null && echo 'exists 1'")
	case *AuthorizedKey:
		s.Add("if _user " + Quote(t.User) + "; then h=$(getent passwd " + Quote(t.User) + " | cut -d: -f6); " +
			`echo "home $h"; (_st "$h/.ssh" | sed 's/^/dir_/'); _st "$h/.ssh/authorized_keys"; _cat "$h/.ssh/authorized_keys"; fi`)
	case *File:
		s.Cmd("_st", t.Path)
	case *Copy:
		fileProbe(&s, t.Dest, t.Content == nil || !t.Content.Secret())
	case *Template:
		fileProbe(&s, t.Dest, !t.Content.Secret())
	case *Upload:
		fileProbe(&s, t.Dest, false)
	case *LineInFile:
		s.Cmd("_st", t.Path)
		s.Cmd("_cat", t.Path)
	case *KeyedLine:
		s.Cmd("_st", t.Path)
		s.Cmd("_cat", t.Path)
	case *Package:
		switch f.PackageManager {
		case "apt":
			s.Add("dpkg-query -W -f='pkg ${Package} ${db:Status-Status}\\n' " + QuoteArgs(t.Names...) + " 2>/dev/null")
			if t.State == "latest" {
				s.Add("echo \"upgrades $(apt-get -s -q install " + QuoteArgs(t.Names...) + " 2>/dev/null | grep -c '^Inst ')\"")
			}
		case "dnf", "yum":
			s.Add("rpm -q --qf 'pkg %{NAME} installed\\n' " + QuoteArgs(t.Names...) + " 2>/dev/null | grep '^pkg '")
			if t.State == "latest" {
				s.Add(f.PackageManager + " -q check-update " + QuoteArgs(t.Names...) + " >/dev/null 2>&1; [ $? = 100 ] && echo 'upgrades 1'")
			}
		default:
			return "", fmt.Errorf("no package manager known on the host (os %q): want apt, dnf or yum", f.OSID)
		}
	case *Service:
		if f.Init != "systemd" {
			return "", fmt.Errorf("service %s: the host does not run systemd", t.Name)
		}
		q := Quote(t.Name)
		s.Add(`echo "load $(systemctl show -p LoadState --value ` + q + ` 2>/dev/null)"`)
		s.Add(`echo "reload $(systemctl show -p NeedDaemonReload --value ` + q + ` 2>/dev/null)"`)
		// A unit file that systemd has not loaded yet (written by an earlier task).
		var dirs []string
		for _, d := range unitDirs {
			dirs = append(dirs, Quote(d+"/"+unitFile(t.Name)))
		}
		s.Add(`for f in ` + strings.Join(dirs, " ") + `; do [ -e "$f" ] && echo "unitfile $f"; done; :`)
		s.Add(`echo "enabled $(systemctl is-enabled ` + q + ` 2>/dev/null)"`)
		s.Add(`echo "active $(systemctl is-active ` + q + ` 2>/dev/null)"`)
	case *Mount:
		s.Add("_cat /etc/fstab")
		s.Add("awk -v p=" + Quote(t.Path) + ` '$2==p {print "mounted " $1 " " $3}' /proc/self/mounts`)
	case *Command:
		guardProbe(&s, t.Guards)
	case *Shell:
		guardProbe(&s, t.Guards)
	default:
		return "", fmt.Errorf("no probe for %s", t.Kind())
	}
	return s.String(), nil
}

func fileProbe(s *Script, path string, content bool) {
	s.Cmd("_st", path)
	s.Cmd("_sum", path)
	s.Cmd("_dir", parentDir(path))
	if content {
		s.Cmd("_cat", path)
	}
}

func guardProbe(s *Script, g Guards) {
	if g.Creates != "" {
		s.Add("[ -e " + Quote(g.Creates) + " ] && echo 'creates 1'")
	}
	if g.Unless != "" {
		s.Add("if (" + g.Unless + "\n) </dev/null >/dev/null 2>&1; then echo 'unless 0'; fi")
	}
}

// Decide returns what a primitive task would change on a host with facts f
// whose state the check printed as p.
func Decide(t Task, f *HostFacts, p Probe) (*Decision, error) {
	switch t := t.(type) {
	case *User:
		return decideUser(t, f, p)
	case *GroupSpec:
		return decideGroup(t, p), nil
	case *AuthorizedKey:
		return decideAuthorizedKey(t, p)
	case *File:
		return decideFile(t, f, p)
	case *Copy:
		return decideWrite(t.Dest, t.Data(), t.Content != nil && t.Content.Secret(), t.Write, f, p)
	case *Template:
		return decideWrite(t.Dest, []byte(t.Content.Reveal()), t.Content.Secret(), t.Write, f, p)
	case *Upload:
		return decideUpload(t, f, p)
	case *LineInFile:
		return decideLineInFile(t, p)
	case *KeyedLine:
		return decideKeyedLine(t, p)
	case *Package:
		return decidePackage(t, f, p), nil
	case *Service:
		return decideService(t, p), nil
	case *Mount:
		return decideMount(t, p)
	case *Command:
		return decideCommand(t.Guards, p, "command", QuoteArgs(t.Argv...), nil), nil
	case *Shell:
		d := decideCommand(t.Guards, p, "script", "sh -e -s", []byte(t.Script.Reveal()))
		if d.Action != apply.NoOp {
			d.Attrs[0].New = t.Script.String()
		}
		d.secret = t.Script.Secret()
		return d, nil
	}
	return nil, fmt.Errorf("no decision for %s", t.Kind())
}

// resolvedOwnership is an Ownership with its group fact resolved.
type resolvedOwnership struct {
	Mode, Owner, Group string // mode in octal with 4 digits, or ""
}

func resolveOwnership(o Ownership, f *HostFacts) (resolvedOwnership, error) {
	var r resolvedOwnership
	if o.Mode != nil {
		r.Mode = o.Mode.String()
	}
	r.Owner = o.Owner
	g, err := f.Resolve(o.Group)
	r.Group = g
	return r, err
}

// ownershipDiff compares a path's ownership with the wanted one and adds
// the attributes and commands that fix it.
func ownershipDiff(d *Decision, path string, own resolvedOwnership, fs fileState, fix bool) {
	if own.Mode != "" && (!fs.Exists || modeOf(fs.Mode) != modeOf(own.Mode)) {
		old := ""
		if fs.Exists {
			old = fmt.Sprintf("%04o", modeOf(fs.Mode))
		}
		d.attr("mode", old, own.Mode)
		if fix {
			d.Script.Add("chmod " + own.Mode + " " + Quote(path))
		}
	}
	if own.Owner != "" && fs.Owner != own.Owner {
		d.attr("owner", fs.Owner, own.Owner)
		if fix {
			d.Script.Cmd("chown", own.Owner, path)
		}
	}
	if own.Group != "" && fs.Group != own.Group {
		d.attr("group", fs.Group, own.Group)
		if fix {
			d.Script.Cmd("chgrp", own.Group, path)
		}
	}
}

func modeOf(s string) uint64 {
	m, _ := strconv.ParseUint(s, 8, 32)
	return m
}

// sha256File returns the hex sha256 of a local file.
func sha256File(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// joinSorted is a display of a list.
func joinList(l []string) string { return strings.Join(l, ",") }
