package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// stepHTTP serves http_files (their revealed contents) to the installer.
//
// Where the guest finds the server follows from the network qemu is
// given (stepNetwork), not from a constant. With user-mode networking
// (slirp) the guest reaches the host at the network's host address
// (b.net.Host, 10.0.2.2 on the 10.0.2.0/24 that stepLaunch passes as
// -netdev user,net=...,host=...), and slirp turns a guest's connection to
// that address into a connection to the host's 127.0.0.1 on the same
// port: so the server listens on 127.0.0.1 only (nothing outside this
// machine can fetch a kickstart that holds a password). On a libvirt
// network it listens on the host's address on that network, which only
// the network's guests (and this host) reach. Either way on a free port;
// the boot command's {{ .HTTPIP }}:{{ .HTTPPort }} are b.hostAddr and
// that port.
type stepHTTP struct {
	srv *http.Server
}

func (*stepHTTP) name() string { return "serve http_files" }

func (s *stepHTTP) run(_ context.Context, b *build) error {
	if len(b.spec.HTTPFiles) == 0 {
		return nil
	}
	mux := http.NewServeMux()
	for name, text := range b.spec.HTTPFiles {
		body := []byte(text.Reveal())
		mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) {
			b.rep.Notef(b.addr, "the installer fetched %s", r.URL.Path)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write(body)
		})
	}
	listen := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if b.network != nil {
		listen = b.hostAddr
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(listen, 0).String())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	b.httpPort = ln.Addr().(*net.TCPAddr).Port
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.rep.Notef(b.addr, "http server: %v", err)
		}
	}()
	return nil
}

func (s *stepHTTP) cleanup(*build) {
	if s.srv != nil {
		_ = s.srv.Close()
	}
}
