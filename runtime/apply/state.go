package apply

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/studiorun/studiorun/runtime"
)

// stateVersion is the version of the state file's format.
const stateVersion = 1

// State records the objects a script owns, in
// <project root>/.studiorun/<script>.state.json. Every change is written
// at once, atomically, so that a run killed at any point leaves a state
// the next run can finish from.
type State struct {
	path    string
	script  string
	mu      sync.Mutex
	entries map[runtime.Address]*Entry
	encoded map[runtime.Address][]byte // each entry's JSON, encoded once per change
	lock    *os.File

	// Group commit: changes made while a write is under way are written
	// together by the next one; each Put or Remove returns once a write
	// that includes it is on disk.
	written *sync.Cond
	changes uint64 // changes made so far
	saved   uint64 // changes on disk
	writing bool
}

type stateFile struct {
	Version int      `json:"version"`
	Script  string   `json:"script"`
	Entries []*Entry `json:"entries"`
}

// StatePath returns the state file of a script (a path relative to the
// project root, such as "scripts/studio.star").
func StatePath(root, script string) string {
	name := strings.TrimSuffix(filepath.Base(script), ".star")
	return filepath.Join(root, ".studiorun", name+".state.json")
}

// OpenState locks and reads the state of a script, creating an empty one
// when none exists. A second run on the same script fails at once, naming
// the process that holds the lock. Close releases it.
func OpenState(root, script string) (*State, error) {
	path := StatePath(root, script)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	lock, err := acquireLock(strings.TrimSuffix(path, ".state.json") + ".lock")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", script, err)
	}
	s := &State{path: path, script: script, entries: map[runtime.Address]*Entry{}, encoded: map[runtime.Address][]byte{}, lock: lock}
	s.written = sync.NewCond(&s.mu)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		s.Close()
		return nil, fmt.Errorf("read state: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		s.Close()
		return nil, fmt.Errorf("state %s is not valid JSON (%v): move it aside to start over; studiorun then recognises its libvirt networks and domains by their metadata", path, err)
	}
	if f.Version != stateVersion {
		s.Close()
		return nil, fmt.Errorf("state %s has version %d; this studiorun reads version %d", path, f.Version, stateVersion)
	}
	for _, e := range f.Entries {
		if err := s.setLocked(e); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// acquireLock takes an exclusive flock on path without waiting; the kernel
// releases it when the process ends, however it ends.
func acquireLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		pid := strings.TrimSpace(string(holder))
		if pid == "" {
			pid = "unknown"
		}
		return nil, fmt.Errorf("another studiorun (pid %s) is applying this script: wait for it to finish, or stop it (lock %s)", pid, path)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// Close releases the lock.
func (s *State) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// Entry returns the entry of an address, or nil.
func (s *State) Entry(addr runtime.Address) *Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries[addr]
}

// Entries returns the entries sorted by address.
func (s *State) Entries() []*Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked()
}

func (s *State) sortedLocked() []*Entry {
	out := make([]*Entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

// Put records an entry and writes the state.
func (s *State) Put(e *Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.setLocked(e); err != nil {
		return err
	}
	return s.commitLocked()
}

// Remove forgets an address and writes the state.
func (s *State) Remove(addr runtime.Address) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, addr)
	delete(s.encoded, addr)
	return s.commitLocked()
}

func (s *State) setLocked(e *Entry) error {
	data, err := json.MarshalIndent(e, "    ", "  ")
	if err != nil {
		return fmt.Errorf("encode state of %s: %w", e.Address, err)
	}
	s.entries[e.Address] = e
	s.encoded[e.Address] = data
	return nil
}

// commitLocked writes the state and returns once the change just made is
// on disk. One caller writes at a time, everything changed up to its
// start; the others wait for the write that covers their change.
func (s *State) commitLocked() error {
	s.changes++
	mine := s.changes
	for s.saved < mine {
		if s.writing {
			s.written.Wait()
			continue
		}
		s.writing = true
		upTo, data := s.changes, s.snapshotLocked()
		s.mu.Unlock()
		err := WriteFileAtomic(s.path, data, 0o600)
		s.mu.Lock()
		s.writing = false
		if err == nil {
			s.saved = upTo
		}
		s.written.Broadcast()
		if err != nil {
			return fmt.Errorf("write state: %w", err)
		}
	}
	return nil
}

// snapshotLocked renders the state file from the encoded entries, sorted
// by address.
func (s *State) snapshotLocked() []byte {
	var b bytes.Buffer
	script, _ := json.Marshal(s.script)
	fmt.Fprintf(&b, "{\n  \"version\": %d,\n  \"script\": %s,\n  \"entries\": [", stateVersion, script)
	for i, e := range s.sortedLocked() {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n    ")
		b.Write(s.encoded[e.Address])
	}
	b.WriteString("\n  ]\n}\n")
	return b.Bytes()
}

// WriteFileAtomic replaces path with data: written to a temporary file in
// the same folder, synced, renamed over path, and the folder synced, so a
// crash leaves either the old file or the new one.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
