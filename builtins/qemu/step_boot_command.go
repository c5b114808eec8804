package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// stepBootCommand waits boot_wait and types the boot command through QMP
// send-key, one command per keystroke (modifiers held in the same
// command). qemu queues the key events: each key's release comes its
// hold time after its press, and the next key right after the release,
// so the hold time is the only delay between keys. send-key's default
// hold time is 100 ms (the default delay of Packer's VNC typing too);
// keyHoldTime is 5 ms: measured here, isolinux's boot: prompt under
// software emulation receives every printable ASCII character intact at
// 1 ms per key, and a 150-key command takes under a second.
type stepBootCommand struct{}

// keyHoldTime is the send-key hold time: how long each key is down.
const keyHoldTime = 5 * time.Millisecond

func (stepBootCommand) name() string { return "type the boot command" }

func (stepBootCommand) run(ctx context.Context, b *build) error {
	if len(b.spec.BootCommand) == 0 {
		return nil
	}
	keys, err := ParseBootCommand(b.spec.BootCommand, BootVars{HTTPIP: b.hostAddr.String(), HTTPPort: b.httpPort, Name: b.name})
	if err != nil {
		return err
	}
	b.rep.Notef(b.addr, "waiting %s (boot_wait) before typing the boot command", time.Duration(b.spec.BootWait))
	if err := sleep(ctx, time.Duration(b.spec.BootWait)); err != nil {
		return err
	}
	start := time.Now()
	// typed is when qemu will have delivered the keys sent so far: a
	// <wait> starts then, not when send-key returned.
	typed := start
	for i, k := range keys {
		if len(k.Keys) == 0 {
			if err := sleep(ctx, time.Until(typed)+k.Wait); err != nil {
				return err
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := b.qmp.Run(sendKeyCommand(k.Keys)); err != nil {
			return fmt.Errorf("key %d of %d (%v): %w", i+1, len(keys), k.Keys, err)
		}
		typed = later(typed, time.Now()).Add(keyHoldTime)
	}
	if err := sleep(ctx, time.Until(typed)); err != nil {
		return err
	}
	b.rep.Notef(b.addr, "typed the boot command (%d keystrokes) in %s", len(keys), time.Since(start).Round(time.Millisecond))
	return nil
}

func (stepBootCommand) cleanup(*build) {}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sendKeyCommand is the QMP send-key command that presses keys (QKeyCode
// names) together and releases them.
func sendKeyCommand(keys []string) []byte {
	type keyValue struct {
		Type string `json:"type"`
		Data string `json:"data"`
	}
	cmd := struct {
		Execute   string `json:"execute"`
		Arguments struct {
			Keys     []keyValue `json:"keys"`
			HoldTime int64      `json:"hold-time"`
		} `json:"arguments"`
	}{Execute: "send-key"}
	cmd.Arguments.HoldTime = keyHoldTime.Milliseconds()
	for _, k := range keys {
		cmd.Arguments.Keys = append(cmd.Arguments.Keys, keyValue{Type: "qcode", Data: k})
	}
	data, _ := json.Marshal(cmd)
	return data
}
