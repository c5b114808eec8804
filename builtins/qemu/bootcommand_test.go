package qemu

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// keys is a shorthand for a keystroke pressing keys together.
func keys(k ...string) Keystroke { return Keystroke{Keys: k} }

func wait(d time.Duration) Keystroke { return Keystroke{Wait: d} }

// typed is the keystrokes that type s, one unshifted key per character.
func typed(s string) []Keystroke {
	var out []Keystroke
	for _, c := range s {
		out = append(out, keys(string(c)))
	}
	return out
}

func join(parts ...[]Keystroke) []Keystroke {
	var out []Keystroke
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var testVars = BootVars{HTTPIP: "10.0.2.2", HTTPPort: 8080, Name: "soe"}

func TestParseBootCommand(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []string
		want    []Keystroke
	}{
		{"empty", nil, nil},
		{"letters and digits", []string{"ab1"}, typed("ab1")},
		{"upper case is shifted", []string{"aB"}, []Keystroke{keys("a"), keys("shift", "b")}},
		{"special keys", []string{"<tab><enter><return><esc><bs><del><spacebar>"},
			[]Keystroke{keys("tab"), keys("ret"), keys("ret"), keys("esc"), keys("backspace"), keys("delete"), keys("spc")}},
		{"navigation keys", []string{"<up><down><left><right><home><end><pageUp><pageDown><insert>"},
			[]Keystroke{keys("up"), keys("down"), keys("left"), keys("right"), keys("home"), keys("end"), keys("pgup"), keys("pgdn"), keys("insert")}},
		{"function keys", []string{"<f1><f10><F12>"}, []Keystroke{keys("f1"), keys("f10"), keys("f12")}},
		{"key names are case-insensitive", []string{"<ENTER><PageUp>"}, []Keystroke{keys("ret"), keys("pgup")}},
		{"waits", []string{"<wait><wait5><wait10s><wait1m30s><wait500ms><wait0.5s>"}, []Keystroke{
			wait(time.Second), wait(5 * time.Second), wait(10 * time.Second), wait(90 * time.Second),
			wait(500 * time.Millisecond), wait(500 * time.Millisecond)}},
		{"held modifier", []string{"<leftCtrlOn>x<leftCtrlOff>x"}, []Keystroke{keys("ctrl", "x"), keys("x")}},
		{"held modifiers stack", []string{"<leftCtrlOn><leftAltOn><del><leftAltOff><leftCtrlOff>"}, []Keystroke{keys("ctrl", "alt", "delete")}},
		{"held shift is not doubled", []string{"<leftShiftOn>A:<leftShiftOff>"}, []Keystroke{keys("shift", "a"), keys("shift", "semicolon")}},
		{"right modifiers", []string{"<rightAltOn>e<rightAltOff><rightShift>"}, []Keystroke{keys("alt_r", "e"), keys("shift_r")}},
		{"modifier held across entries", []string{"<leftCtrlOn>", "c", "<leftCtrlOff>"}, []Keystroke{keys("ctrl", "c")}},
		{"a lone < is typed", []string{"a<=b<"}, []Keystroke{keys("a"), keys("shift", "comma"), keys("equal"), keys("b"), keys("shift", "comma")}},
		{"<> is typed", []string{"<>"}, []Keystroke{keys("shift", "comma"), keys("shift", "dot")}},
		{"template fields", []string{"{{ .HTTPIP }}:{{.HTTPPort}} {{ .Name }}"}, join(
			typed("10"), []Keystroke{keys("dot")}, typed("0"), []Keystroke{keys("dot")}, typed("2"), []Keystroke{keys("dot")}, typed("2"),
			[]Keystroke{keys("shift", "semicolon")}, typed("8080"), []Keystroke{keys("spc")}, typed("soe"))},
		{"the article's boot command", []string{"<tab> text ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg<enter><wait>"}, join(
			[]Keystroke{keys("tab"), keys("spc")}, typed("text"), []Keystroke{keys("spc")}, typed("ks"), []Keystroke{keys("equal")},
			typed("http"), []Keystroke{keys("shift", "semicolon"), keys("slash"), keys("slash")},
			typed("10"), []Keystroke{keys("dot")}, typed("0"), []Keystroke{keys("dot")}, typed("2"), []Keystroke{keys("dot")}, typed("2"),
			[]Keystroke{keys("shift", "semicolon")}, typed("8080"), []Keystroke{keys("slash")}, typed("ks"), []Keystroke{keys("dot")}, typed("cfg"),
			[]Keystroke{keys("ret"), wait(time.Second)})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBootCommand(tc.entries, testVars)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseBootCommand(%q):\n got %v\nwant %v", tc.entries, got, tc.want)
			}
		})
	}
}

// TestParseBootCommandPrintable types every printable ASCII character and
// checks each becomes exactly one keystroke, shifted where a US keyboard
// needs it.
func TestParseBootCommandPrintable(t *testing.T) {
	var all strings.Builder
	for c := byte(' '); c <= '~'; c++ {
		all.WriteByte(c)
	}
	got, err := ParseBootCommand([]string{all.String()}, testVars)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != '~'-' '+1 {
		t.Fatalf("%d keystrokes for %d characters", len(got), '~'-' '+1)
	}
	const shiftedChars = `!"#$%&()*+:<>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ^_{|}~`
	seen := map[string]bool{}
	for i, k := range got {
		c := rune(' ' + i)
		shift := strings.ContainsRune(shiftedChars, c)
		if want := map[bool]int{true: 2, false: 1}[shift]; len(k.Keys) != want || (shift && k.Keys[0] != "shift") {
			t.Errorf("%q: got keys %v", c, k.Keys)
		}
		chord := strings.Join(k.Keys, "+")
		if seen[chord] {
			t.Errorf("%q: keys %v type another character too", c, k.Keys)
		}
		seen[chord] = true
	}
}

func TestParseBootCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		entries []string
		want    string
	}{
		{[]string{"ok", "<tab><enterr>"}, `boot_command[1] "<tab><enterr>": unknown key <enterr>: did you mean <enter>?`},
		{[]string{"<frobnicate>"}, `boot_command[0] "<frobnicate>": unknown key <frobnicate>: see the boot command syntax in the README`},
		{[]string{"http://{{ .HTTPAddr }}/"}, `boot_command[0] "http://{{ .HTTPAddr }}/": unknown template field {{ .HTTPAddr }}: want {{ .HTTPIP }}, {{ .HTTPPort }} or {{ .Name }}`},
		{[]string{"{{ .HTTPIP"}, `boot_command[0] "{{ .HTTPIP": unclosed template field: "{{ .HTTPIP" has no matching }}`},
		{[]string{"<waitlong>"}, `boot_command[0] "<waitlong>": <waitlong>: want <wait>, <waitN> (seconds) or a duration such as <wait10s> or <wait1m30s>`},
		{[]string{"<enterOn>"}, `boot_command[0] "<enterOn>": <enterOn>: only the modifier keys (leftCtrl, leftAlt, leftShift, leftSuper and their right* twins) can be held`},
		{[]string{"<leftCtrlOff>"}, `boot_command[0] "<leftCtrlOff>": <leftCtrlOff> releases leftCtrl, which is not held`},
		{[]string{"<leftAltOn>x"}, `boot_command: <leftAltOn> is still held at the end: release it with <leftAltOff>`},
		{[]string{"café"}, `boot_command[0] "café": 'é' cannot be typed: boot commands are typed on a US keyboard, ASCII only`},
		{[]string{"a\x01"}, `boot_command[0] "a\x01": character '\x01' cannot be typed: use a key name such as <enter> or <tab>`},
	} {
		_, err := ParseBootCommand(tc.entries, testVars)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseBootCommand(%q):\n got error %v\nwant %s", tc.entries, err, tc.want)
		}
	}
}
