package qemu

import (
	"strings"
	"testing"

	"github.com/studiorun/studiorun/builtins/internal/kvm"
)

func TestChooseAccel(t *testing.T) {
	works := kvm.Status{OK: true}
	broken := kvm.Status{Reason: "a KVM guest stopped with a KVM internal error"}
	for _, tc := range []struct {
		requested string
		kvm       kvm.Status
		accel     string
		notice    string // substring
		err       string // substring
	}{
		{"auto", works, "kvm", "", ""},
		{"auto", broken, "tcg", "KVM does not work here (a KVM guest stopped with a KVM internal error): building under software emulation (TCG)", ""},
		{"kvm", works, "kvm", "", ""},
		{"kvm", broken, "", "", `accelerator "kvm": KVM does not work here (a KVM guest stopped with a KVM internal error): use accelerator = "auto"`},
		{"tcg", works, "tcg", "", ""},
		{"tcg", broken, "tcg", "", ""},
		{"hvf", works, "", "", `accelerator "hvf": want "auto", "kvm" or "tcg"`},
	} {
		accel, notice, err := chooseAccel(tc.requested, tc.kvm)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("chooseAccel(%q, %+v) error %v, want %q", tc.requested, tc.kvm, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("chooseAccel(%q, %+v): %v", tc.requested, tc.kvm, err)
		case accel != tc.accel || (tc.notice == "") != (notice == "") || !strings.Contains(notice, tc.notice):
			t.Errorf("chooseAccel(%q, %+v) = %q, %q; want %q, %q", tc.requested, tc.kvm, accel, notice, tc.accel, tc.notice)
		}
	}
}
