package ssh

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// Quote returns s quoted for a POSIX shell: unchanged when it holds only
// characters that no shell interprets, else in single quotes (a single
// quote itself closes the quotes, is escaped with a backslash, and reopens
// them).
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// QuoteArgs quotes each argument and joins them with blanks: a command
// line that runs argv without a shell's interpretation.
func QuoteArgs(argv ...string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// Script builds a POSIX shell script line by line.
type Script struct{ lines []string }

// Add appends a line.
func (s *Script) Add(line string) { s.lines = append(s.lines, line) }

// Cmd appends a command line of quoted arguments.
func (s *Script) Cmd(argv ...string) { s.Add(QuoteArgs(argv...)) }

// Append appends the lines of another script.
func (s *Script) Append(o Script) { s.lines = append(s.lines, o.lines...) }

// Empty reports whether the script has no line.
func (s *Script) Empty() bool { return len(s.lines) == 0 }

// Lines returns the lines.
func (s *Script) Lines() []string { return s.lines }

// String returns the script, one command per line.
func (s *Script) String() string {
	if len(s.lines) == 0 {
		return ""
	}
	return strings.Join(s.lines, "\n") + "\n"
}

// writeFileScript writes the standard input to path atomically: a
// temporary file in the same directory, fsync, then installScript.
func writeFileScript(path string, own resolvedOwnership, validate string, backup bool) Script {
	var s Script
	s.Add("t=$(mktemp " + Quote(parentDir(path)+"/.studiorun.XXXXXX") + ")")
	s.Add(`trap 'rm -f "$t"' EXIT`)
	s.Add(`cat > "$t"`)
	s.Add(`sync -- "$t" 2>/dev/null || sync`)
	s.Append(installScript(path, own, validate, backup))
	return s
}

// uploadTokenLen is the length of the random hex suffix of an upload's
// temporary file (.studiorun.<suffix> beside its destination).
const uploadTokenLen = 16

// uploadScript installs an upload at path. The driver puts the file on the
// host before the script runs and passes it on the script's standard
// input, whose first line says how (the script is decided before the
// transport is known):
//
//   - the suffix of the temporary file that SFTP wrote and fsynced beside
//     path (.studiorun.<suffix>); the script removes it if it fails;
//   - an empty line, the file's content following: the script writes it
//     as writeFileScript does (making the directory first with mkdir).
//
// Both end in installScript.
func uploadScript(path string, own resolvedOwnership, mkdir bool) Script {
	var s Script
	dir := parentDir(path)
	s.Add("IFS= read -r s")
	s.Add("case $s in")
	s.Add("'')")
	if mkdir {
		s.Add("  " + QuoteArgs("mkdir", "-p", "--", dir))
	}
	s.Add("  t=$(mktemp " + Quote(dir+"/.studiorun.XXXXXX") + ")")
	s.Add(`  trap 'rm -f "$t"' EXIT`)
	s.Add(`  cat > "$t"`)
	s.Add(`  sync -- "$t" 2>/dev/null || sync ;;`)
	s.Add(strings.Repeat("?", uploadTokenLen) + ")")
	s.Add("  case $s in *[!0-9a-f]*) echo \"upload: bad temporary file suffix $s\" >&2; exit 1 ;; esac")
	s.Add("  t=" + Quote(dir+"/.studiorun.") + "$s")
	s.Add(`  trap 'rm -f "$t"' EXIT`)
	s.Add(`  [ -f "$t" ] && [ ! -L "$t" ] || { echo "upload: $t is not the file SFTP wrote" >&2; exit 1; } ;;`)
	s.Add("*) echo \"upload: bad first line $s\" >&2; exit 1 ;;")
	s.Add("esac")
	s.Append(installScript(path, own, "", false))
	return s
}

// installScript finishes an atomic write of path from the temporary file
// $t (removed by the EXIT trap if the script fails): the validate command
// (its %s replaced by the temporary file) run on it, mode and ownership
// (given, or those of the file it replaces, or 0644 for a new file), an
// optional backup of the previous file as path.<timestamp>~, then rename.
func installScript(path string, own resolvedOwnership, validate string, backup bool) Script {
	var s Script
	if validate != "" {
		cmd := strings.ReplaceAll(validate, "%s", `"$t"`)
		s.Add("if ! out=$(" + cmd + " 2>&1); then printf '%s failed: %s\\n' " + Quote("validate "+validate) + ` "$out" >&2; exit 1; fi`)
	}
	if own.Mode != "" {
		s.Add("chmod " + own.Mode + ` "$t"`)
	} else {
		s.Add("if [ -e " + Quote(path) + " ]; then chmod --reference=" + Quote(path) + ` "$t"; else chmod 0644 "$t"; fi`)
	}
	s.Add("if [ -e " + Quote(path) + " ]; then chown --reference=" + Quote(path) + ` "$t"; fi`)
	if own.Owner != "" || own.Group != "" {
		s.Add("chown " + Quote(own.Owner+groupSuffix(own.Group)) + ` "$t"`)
	}
	if backup {
		s.Add("if [ -e " + Quote(path) + " ]; then cp -p -- " + Quote(path) + " " + Quote(path) + `".$(date +%Y-%m-%d@%H:%M:%S)~"; fi`)
	}
	s.Add(`mv -f -- "$t" ` + Quote(path))
	s.Add("trap - EXIT")
	return s
}

func groupSuffix(g string) string {
	if g == "" {
		return ""
	}
	return ":" + g
}

// parentDir returns the directory of an absolute path.
func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// randomHex returns n random hexadecimal digits (n even), for the names
// and markers that a host must not be able to guess or collide with.
func randomHex(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}
