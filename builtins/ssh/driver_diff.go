package ssh

import (
	"fmt"
	"strings"

	"github.com/studiorun/studiorun/runtime/apply"
)

// maxDiffLines bounds the files that unifiedDiff compares line by line.
const maxDiffLines = 4000

// ContentChange is the change of a file's content from old to new: a note
// counting the lines added and removed, and the unified diff that --diff
// shows.
func ContentChange(name, path, old, new string) apply.AttrChange {
	diff, added, removed, ok := unifiedDiff(path, old, new)
	if !ok {
		return apply.AttrChange{Name: name, Note: diff}
	}
	note := fmt.Sprintf("%d line(s) added, %d removed", added, removed)
	return apply.AttrChange{Name: name, Note: note, Diff: diff}
}

// unifiedDiff returns the unified diff (3 lines of context) that turns old
// into new, with headers naming path ("" when they are equal), and the
// lines added and removed; ok is false when the files are too long to
// compare (diff then says so).
func unifiedDiff(path, old, new string) (diff string, added, removed int, ok bool) {
	if old == new {
		return "", 0, 0, true
	}
	a, b := splitLines(old), splitLines(new)
	if len(a) > maxDiffLines || len(b) > maxDiffLines {
		return fmt.Sprintf("content changed (%d lines before, %d after: too long to compare)", len(a), len(b)), 0, 0, false
	}
	ops := diffOps(a, b)
	for _, o := range ops {
		switch o.kind {
		case '+':
			added++
		case '-':
			removed++
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", path, path)
	const ctx = 3
	// Group the ops into hunks.
	i := 0
	for i < len(ops) {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(i-ctx, 0)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*ctx {
				end = min(end+ctx, len(ops))
				break
			}
			end = run
		}
		aStart, bStart, aLen, bLen := ops[start].a, ops[start].b, 0, 0
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				aLen++
			}
			if o.kind != '-' {
				bLen++
			}
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(aStart, aLen), hunkRange(bStart, bLen))
		for _, o := range ops[start:end] {
			out.WriteByte(o.kind)
			out.WriteString(o.text)
			out.WriteByte('\n')
		}
		i = end
	}
	if old != "" && !strings.HasSuffix(old, "\n") || new != "" && !strings.HasSuffix(new, "\n") {
		out.WriteString("\\ (a file does not end with a newline)\n")
	}
	return strings.TrimSuffix(out.String(), "\n"), added, removed, true
}

func hunkRange(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	if n == 1 {
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

type diffOp struct {
	kind byte // ' ', '-', '+'
	text string
	a, b int // positions in a and b before this op
}

// diffOps is a longest-common-subsequence edit script of a into b.
func diffOps(a, b []string) []diffOp {
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i], i, j})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, diffOp{'-', a[i], i, j})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j], i, j})
			j++
		}
	}
	return ops
}
