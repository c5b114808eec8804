package ssh

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// The check script: one POSIX shell script per host that prints, for every
// step of every task of the host, the state needed to decide it, in
// sections:
//
//	@@ <section>
//	<key> <value>
//
// Keys are a step's own (type, mode, sha256, content, passwd, ...); values
// that may hold any byte are base64 (content). The script only reads: it
// runs each task's unless= guard, which must itself only read.

// checkHeader defines the shell functions that the probes use.
const checkHeader = `_st() { if [ -e "$1" ]; then stat -L -c 'type %F
mode %a
owner %U
group %G
size %s' -- "$1"; else echo 'type absent'; fi; }
_sum() { [ -f "$1" ] && [ -r "$1" ] && echo "sha256 $(sha256sum < "$1" | cut -c1-64)"; }
_cat() { if [ -f "$1" ] && [ -r "$1" ]; then if [ "$(stat -L -c %s -- "$1")" -le 262144 ]; then echo "content $(base64 < "$1" | tr -d '\n')"; else echo 'content_too_large 1'; fi; fi; }
_user() { l=$(getent passwd "$1") && echo "passwd $l" && echo "groups $(id -Gn "$1" | tr ' ' ',')"; }
_dir() { if [ -d "$1" ]; then echo 'parent 1'; fi; }
`

// Probe is what the check script printed for one step.
type Probe map[string]string

// Has reports whether the key was printed.
func (p Probe) Has(k string) bool { _, ok := p[k]; return ok }

// Content returns the decoded content key (ok false when not printed).
func (p Probe) Content(key string) (string, bool, error) {
	v, ok := p[key]
	if !ok {
		return "", false, nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return "", false, fmt.Errorf("decode %s: %w", key, err)
	}
	return string(b), true, nil
}

// fileState is a path as _st printed it.
type fileState struct {
	Exists, IsDir, IsFile bool
	Mode                  string // octal, without leading zeros: 644
	Owner, Group          string
	Size                  int64
}

func (p Probe) file() fileState {
	t := p["type"]
	fs := fileState{Exists: t != "" && t != "absent"}
	fs.IsDir = t == "directory"
	fs.IsFile = strings.HasPrefix(t, "regular")
	fs.Mode, fs.Owner, fs.Group = p["mode"], p["owner"], p["group"]
	fs.Size, _ = strconv.ParseInt(p["size"], 10, 64)
	return fs
}

// buildCheck returns the check script of the given sections (each the
// probe commands of one step).
func buildCheck(probes []string) string {
	var b strings.Builder
	b.WriteString(checkHeader)
	for i, p := range probes {
		fmt.Fprintf(&b, "echo '@@ %d'\n%s", i, p)
		if p != "" && !strings.HasSuffix(p, "\n") {
			b.WriteByte('\n')
		}
	}
	b.WriteString("echo '@@ end'\n")
	return b.String()
}

// parseCheck reads the output of a check script of n sections.
func parseCheck(out string, n int) ([]Probe, error) {
	probes := make([]Probe, n)
	cur := -1
	ended := false
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "@@ "); ok {
			if rest == "end" {
				ended = true
				break
			}
			i, err := strconv.Atoi(rest)
			if err != nil || i < 0 || i >= n {
				return nil, fmt.Errorf("check: unexpected section %q", rest)
			}
			cur = i
			probes[i] = Probe{}
			continue
		}
		if cur < 0 || line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		if old, ok := probes[cur][k]; ok && k == "pkg" {
			v = old + "\n" + v
		}
		probes[cur][k] = v
	}
	if !ended {
		return nil, fmt.Errorf("check: the output ends early (the host's shell stopped the script)")
	}
	for i := range probes {
		if probes[i] == nil {
			return nil, fmt.Errorf("check: section %d is missing", i)
		}
	}
	return probes, nil
}
