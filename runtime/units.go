package runtime

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// MiB is a size in mebibytes, unpacked from an int (MiB, as libvirt's and
// Packer's memory and disk sizes are) or a string with a binary unit such
// as "512MiB", "1GiB" or "2TiB".
type MiB int64

var _ starlark.Unpacker = (*MiB)(nil)

var sizeUnits = []struct {
	suffix string
	kib    int64
}{{"KiB", 1}, {"MiB", 1 << 10}, {"GiB", 1 << 20}, {"TiB", 1 << 30}}

// Unpack implements starlark.Unpacker.
func (m *MiB) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.Int:
		n, ok := v.Int64()
		if !ok || n < 1 || n > math.MaxInt32 {
			return fmt.Errorf("%s MiB is out of range: want at least 1", v)
		}
		*m = MiB(n)
		return nil
	case starlark.String:
		s := string(v)
		for _, u := range sizeUnits {
			num, ok := strings.CutSuffix(s, u.suffix)
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n < 1 {
				break
			}
			kib := n * u.kib
			if kib/u.kib != n || kib%1024 != 0 || kib/1024 > math.MaxInt32 {
				return fmt.Errorf("%q is not a whole number of MiB in range", s)
			}
			*m = MiB(kib / 1024)
			return nil
		}
		return fmt.Errorf("%q: want a number of MiB or a size such as \"512MiB\" or \"1GiB\"", s)
	}
	return fmt.Errorf("got %s, want a number of MiB or a size such as \"1GiB\"", v.Type())
}

// Mode is a Unix file mode, unpacked from an octal int (0o640) or an octal
// string ("0640"). A decimal int that reads like an octal mode (600, whose
// value is 0o1130) is refused with the mode that was probably meant.
type Mode uint32

var _ starlark.Unpacker = (*Mode)(nil)

// commonModes are the modes people write; a decimal int spelling one of
// them is a typo for the octal one.
var commonModes = map[int64]bool{
	400: true, 440: true, 444: true, 500: true, 550: true, 555: true, 600: true, 640: true,
	644: true, 660: true, 664: true, 666: true, 700: true, 750: true, 755: true, 770: true,
	775: true, 777: true,
}

// Unpack implements starlark.Unpacker.
func (m *Mode) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.Int:
		n, ok := v.Int64()
		if !ok || n < 0 || n > 0o7777 {
			return fmt.Errorf("mode %s is out of range: want 0o000 to 0o7777", v)
		}
		digits := strconv.FormatInt(n, 10)
		if allOctal(digits) && len(digits) == 3 && (n > 0o777 || commonModes[n] && !commonModes[octalDigits(n)]) {
			return fmt.Errorf("mode %d is decimal (0o%o in octal%s); write 0o%d or %q", n, n, specialBits(n), n, "0"+digits)
		}
		*m = Mode(n)
		return nil
	case starlark.String:
		s := string(v)
		n, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
		if err != nil || s == "" || n > 0o7777 {
			return fmt.Errorf("mode %q: want an octal mode such as \"0640\" or 0o640", s)
		}
		*m = Mode(n)
		return nil
	}
	return fmt.Errorf("mode: got %s, want an octal int such as 0o640 or a string such as \"0640\"", v.Type())
}

// String returns the mode as "0640".
func (m Mode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// MarshalJSON writes the mode as the string "0640".
func (m Mode) MarshalJSON() ([]byte, error) { return []byte(`"` + m.String() + `"`), nil }

func allOctal(s string) bool { return strings.Trim(s, "01234567") == "" }

// octalDigits reads n's octal digits as a decimal number: 0o640 -> 640.
func octalDigits(n int64) int64 {
	d, _ := strconv.ParseInt(strconv.FormatInt(n, 8), 10, 64)
	return d
}

func specialBits(n int64) string {
	var bits []string
	if n&0o4000 != 0 {
		bits = append(bits, "setuid")
	}
	if n&0o2000 != 0 {
		bits = append(bits, "setgid")
	}
	if n&0o1000 != 0 {
		bits = append(bits, "sticky")
	}
	if len(bits) == 0 {
		return ""
	}
	return ", with the " + strings.Join(bits, " and ") + " bit set"
}

// Duration is a length of time, unpacked from a string such as "30m" or
// "90s", or an int of seconds.
type Duration time.Duration

var _ starlark.Unpacker = (*Duration)(nil)

// Unpack implements starlark.Unpacker.
func (d *Duration) Unpack(v starlark.Value) error {
	switch v := v.(type) {
	case starlark.Int:
		n, ok := v.Int64()
		if !ok || n < 0 || n > 1<<31 {
			return fmt.Errorf("duration %s seconds is out of range", v)
		}
		*d = Duration(time.Duration(n) * time.Second)
		return nil
	case starlark.String:
		t, err := time.ParseDuration(string(v))
		if err != nil || t < 0 {
			return fmt.Errorf("duration %q: want a duration such as \"90s\" or \"30m\"", string(v))
		}
		*d = Duration(t)
		return nil
	}
	return fmt.Errorf("duration: got %s, want a string such as \"30m\" or an int of seconds", v.Type())
}

// String returns the duration as Go prints it ("30m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }
