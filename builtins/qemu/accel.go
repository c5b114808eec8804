package qemu

// The accelerator: KVM when it works (package kvm probes it), else
// software emulation (TCG).

import (
	"fmt"

	"github.com/studiorun/studiorun/builtins/internal/kvm"
)

// chooseAccel picks the accelerator for the requested one ("auto", "kvm",
// "tcg") given the probe; notice is set when "auto" falls back.
func chooseAccel(requested string, st kvm.Status) (accel, notice string, err error) {
	switch requested {
	case "tcg":
		return "tcg", "", nil
	case "kvm":
		if !st.OK {
			return "", "", fmt.Errorf("accelerator \"kvm\": KVM does not work here (%s): use accelerator = \"auto\" to fall back to software emulation, or \"tcg\"", st.Reason)
		}
		return "kvm", "", nil
	case "auto", "":
		if !st.OK {
			return "tcg", fmt.Sprintf("KVM does not work here (%s): building under software emulation (TCG), several times slower", st.Reason), nil
		}
		return "kvm", "", nil
	}
	return "", "", fmt.Errorf("accelerator %q: want \"auto\", \"kvm\" or \"tcg\"", requested)
}
