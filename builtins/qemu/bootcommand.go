package qemu

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Keystroke is one step of a parsed boot command: keys pressed together
// and then released (one QMP send-key), or a pause when Keys is empty.
type Keystroke struct {
	// Keys are QMP QKeyCode names, held modifiers first: ["shift", "a"].
	Keys []string
	// Wait is how long to pause; it is set only when Keys is empty.
	Wait time.Duration
}

// BootVars are the values of the template fields of a boot command:
// {{ .HTTPIP }}, {{ .HTTPPort }} and {{ .Name }}, as in Packer.
type BootVars struct {
	HTTPIP   string
	HTTPPort int
	Name     string
}

// ParseBootCommand expands the template fields of a boot command's
// entries and parses them, as one sequence, into keystrokes with Packer's
// syntax: characters are typed on a US keyboard; <enter>, <tab>, <f1> and
// the other key names (case-insensitive) press that key; <leftCtrlOn> ...
// <leftCtrlOff> hold a modifier over the keys between them; <wait>,
// <wait5>, <wait5s> and <wait1m30s> pause. A "<" that does not start a
// <name> made of letters, digits and dots is typed as itself, so "a <= b" types
// five characters; an unknown <name> is an error, not text to type.
func ParseBootCommand(entries []string, vars BootVars) ([]Keystroke, error) {
	var out []Keystroke
	var held []string // held modifiers, in the order they were pressed
	for i, entry := range entries {
		text, err := expandBootFields(entry, vars)
		if err != nil {
			return nil, fmt.Errorf("boot_command[%d] %q: %w", i, entry, err)
		}
		out, held, err = parseKeys(out, held, text)
		if err != nil {
			return nil, fmt.Errorf("boot_command[%d] %q: %w", i, entry, err)
		}
	}
	if len(held) > 0 {
		name := modifiers[held[len(held)-1]]
		return nil, fmt.Errorf("boot_command: <%sOn> is still held at the end: release it with <%sOff>", name, name)
	}
	return out, nil
}

var fieldRE = regexp.MustCompile(`\{\{-?\s*(.*?)\s*-?\}\}`)

// expandBootFields replaces {{ .HTTPIP }}, {{ .HTTPPort }} and {{ .Name }}.
func expandBootFields(entry string, vars BootVars) (string, error) {
	var err error
	text := fieldRE.ReplaceAllStringFunc(entry, func(m string) string {
		switch field := fieldRE.FindStringSubmatch(m)[1]; field {
		case ".HTTPIP":
			return vars.HTTPIP
		case ".HTTPPort":
			return strconv.Itoa(vars.HTTPPort)
		case ".Name":
			return vars.Name
		default:
			if err == nil {
				err = fmt.Errorf("unknown template field %s: want {{ .HTTPIP }}, {{ .HTTPPort }} or {{ .Name }}", m)
			}
			return m
		}
	})
	if err != nil {
		return "", err
	}
	if strings.Contains(text, "{{") {
		return "", fmt.Errorf("unclosed template field: %q has no matching }}", text[strings.Index(text, "{{"):])
	}
	return text, nil
}

// specialKeys maps Packer's key names, lower-cased, to QMP key codes.
var specialKeys = map[string]string{
	"bs": "backspace", "del": "delete", "enter": "ret", "return": "ret", "esc": "esc",
	"tab": "tab", "spacebar": "spc", "insert": "insert", "home": "home", "end": "end",
	"pageup": "pgup", "pagedown": "pgdn", "up": "up", "down": "down", "left": "left", "right": "right",
	"f1": "f1", "f2": "f2", "f3": "f3", "f4": "f4", "f5": "f5", "f6": "f6",
	"f7": "f7", "f8": "f8", "f9": "f9", "f10": "f10", "f11": "f11", "f12": "f12",
	"leftalt": "alt", "leftctrl": "ctrl", "leftshift": "shift", "leftsuper": "meta_l",
	"rightalt": "alt_r", "rightctrl": "ctrl_r", "rightshift": "shift_r", "rightsuper": "meta_r",
}

// modifiers maps the QMP codes of the keys that <nameOn>/<nameOff> may
// hold to their Packer names.
var modifiers = map[string]string{
	"alt": "leftAlt", "ctrl": "leftCtrl", "shift": "leftShift", "meta_l": "leftSuper",
	"alt_r": "rightAlt", "ctrl_r": "rightCtrl", "shift_r": "rightShift", "meta_r": "rightSuper",
}

// keyExprRE matches a <name>: letters, then letters, digits and dots
// (<wait0.5s>).
var keyExprRE = regexp.MustCompile(`^<([A-Za-z][A-Za-z0-9.]*)>`)

// parseKeys appends the keystrokes of text to out, starting with the held
// modifiers, and returns the modifiers still held at its end.
func parseKeys(out []Keystroke, held []string, text string) ([]Keystroke, []string, error) {
	for len(text) > 0 {
		if m := keyExprRE.FindStringSubmatch(text); m != nil {
			text = text[len(m[0]):]
			name := m[1]
			lower := strings.ToLower(name)
			if wait, ok, err := parseWait(lower); ok {
				if err != nil {
					return nil, nil, fmt.Errorf("<%s>: %w", name, err)
				}
				out = append(out, Keystroke{Wait: wait})
				continue
			}
			if code, ok := specialKeys[lower]; ok {
				out = append(out, press(held, code, false))
				continue
			}
			base, on := strings.CutSuffix(lower, "on")
			base, off := strings.CutSuffix(base, "off")
			code, isKey := specialKeys[base]
			if (on || off) && isKey && modifiers[code] != "" {
				if on && !slices.Contains(held, code) {
					held = append(held, code)
				}
				if off {
					if !slices.Contains(held, code) {
						return nil, nil, fmt.Errorf("<%s> releases %s, which is not held", name, modifiers[code])
					}
					held = slices.DeleteFunc(held, func(h string) bool { return h == code })
				}
				continue
			}
			if (on || off) && isKey {
				return nil, nil, fmt.Errorf("<%s>: only the modifier keys (leftCtrl, leftAlt, leftShift, leftSuper and their right* twins) can be held", name)
			}
			return nil, nil, fmt.Errorf("unknown key <%s>%s", name, suggestKey(lower))
		}
		r := text[0]
		if r >= 0x80 {
			return nil, nil, fmt.Errorf("%q cannot be typed: boot commands are typed on a US keyboard, ASCII only", []rune(text)[0])
		}
		code, shift, ok := charKey(r)
		if !ok {
			return nil, nil, fmt.Errorf("character %q cannot be typed: use a key name such as <enter> or <tab>", r)
		}
		out = append(out, press(held, code, shift))
		text = text[1:]
	}
	return out, held, nil
}

// parseWait reads <wait>, <waitN> (seconds) and <waitDURATION>; ok is
// false when name is not a wait at all.
func parseWait(name string) (d time.Duration, ok bool, err error) {
	arg, isWait := strings.CutPrefix(name, "wait")
	if !isWait {
		return 0, false, nil
	}
	if arg == "" {
		return time.Second, true, nil
	}
	if n, err := strconv.Atoi(arg); err == nil {
		return time.Duration(n) * time.Second, true, nil
	}
	d, err = time.ParseDuration(arg)
	if err != nil {
		return 0, true, fmt.Errorf("want <wait>, <waitN> (seconds) or a duration such as <wait10s> or <wait1m30s>")
	}
	return d, true, nil
}

// press is one key pressed with the held modifiers (and shift, when the
// character needs it and no shift is held).
func press(held []string, code string, shift bool) Keystroke {
	keys := append([]string(nil), held...)
	if shift && !slices.Contains(held, "shift") && !slices.Contains(held, "shift_r") {
		keys = append(keys, "shift")
	}
	return Keystroke{Keys: append(keys, code)}
}

// shifted maps the characters typed with shift on a US keyboard to the
// key that types them.
var shifted = map[byte]byte{
	'!': '1', '@': '2', '#': '3', '$': '4', '%': '5', '^': '6', '&': '7', '*': '8', '(': '9', ')': '0',
	'_': '-', '+': '=', '{': '[', '}': ']', '|': '\\', ':': ';', '"': '\'', '~': '`', '<': ',', '>': '.', '?': '/',
}

var punctuation = map[byte]string{
	'-': "minus", '=': "equal", '[': "bracket_left", ']': "bracket_right", '\\': "backslash",
	';': "semicolon", '\'': "apostrophe", '`': "grave_accent", ',': "comma", '.': "dot", '/': "slash",
	' ': "spc", '\t': "tab", '\n': "ret",
}

// charKey returns the QMP key code that types c on a US keyboard and
// whether it needs shift.
func charKey(c byte) (code string, shift bool, ok bool) {
	if base, ok := shifted[c]; ok {
		c, shift = base, true
	}
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return string(c), shift, true
	case c >= 'A' && c <= 'Z':
		return string(c - 'A' + 'a'), true, true
	}
	code, ok = punctuation[c]
	return code, shift, ok
}

// suggestKey names the known key closest to an unknown one, if any is
// within two edits.
func suggestKey(name string) string {
	best, bestDist := "", 3
	for _, k := range knownKeyNames {
		if d := editDistance(name, strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ": see the boot command syntax in the README"
	}
	return fmt.Sprintf(": did you mean <%s>?", best)
}

// knownKeyNames are the key names as Packer's documentation spells them.
var knownKeyNames = []string{
	"bs", "del", "enter", "return", "esc", "tab", "spacebar", "insert", "home", "end", "pageUp", "pageDown",
	"up", "down", "left", "right", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10", "f11", "f12",
	"leftAlt", "leftCtrl", "leftShift", "leftSuper", "rightAlt", "rightCtrl", "rightShift", "rightSuper",
	"leftAltOn", "leftAltOff", "leftCtrlOn", "leftCtrlOff", "leftShiftOn", "leftShiftOff",
	"rightAltOn", "rightAltOff", "rightCtrlOn", "rightCtrlOff", "rightShiftOn", "rightShiftOff", "wait",
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
