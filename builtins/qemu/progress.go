package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"time"
)

// sha256Writer hashes what it writes through.
type sha256Writer struct {
	w io.Writer
	h hash.Hash
}

func newSHA256Writer(w io.Writer) *sha256Writer { return &sha256Writer{w: w, h: sha256.New()} }

func (s *sha256Writer) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.h.Write(p[:n])
	return n, err
}

func (s *sha256Writer) sum() string { return hex.EncodeToString(s.h.Sum(nil)) }

// progressWriter reports the bytes written through it, at most twice a
// second and once at the end.
type progressWriter struct {
	w      io.Writer
	done   int64
	total  int64
	last   time.Time
	report func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	if time.Since(p.last) > 500*time.Millisecond || p.done == p.total {
		p.last = time.Now()
		p.report(p.done, p.total)
	}
	return n, err
}
