package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// knownHostsMu serialises the reading and rewriting of known_hosts files
// by the hosts of one process.
var knownHostsMu sync.Mutex

// HostKeyError is a host key that known_hosts does not allow.
type HostKeyError struct {
	Host    string // address:port
	Got     string // SHA256 fingerprint presented by the host
	Want    []string
	Changed bool // known_hosts has another key for the host
	File    string
}

func (e *HostKeyError) Error() string {
	if e.Changed {
		return fmt.Sprintf("host key of %s CHANGED: it presents %s, %s holds %s; someone may be intercepting the connection, or the host was reinstalled: if so, remove its line from %s (ssh-keygen -R %s -f %s)",
			e.Host, e.Got, e.File, strings.Join(e.Want, ", "), e.File, knownhosts.Normalize(e.Host), e.File)
	}
	return fmt.Sprintf("host key of %s is unknown (%s, not in %s): check it and run again with --accept-new-host-keys to record it", e.Host, e.Got, e.File)
}

// hostKeyCallback checks host keys against the known_hosts file, and
// records unknown ones when accept is set.
func hostKeyCallback(file string, accept bool) ssh.HostKeyCallback {
	return func(hostport string, remote net.Addr, key ssh.PublicKey) error {
		knownHostsMu.Lock()
		defer knownHostsMu.Unlock()
		err := checkKnownHost(file, hostport, remote, key)
		var ke *HostKeyError
		if errors.As(err, &ke) && !ke.Changed && accept {
			line := knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key)
			if err := appendKnownHost(file, line); err != nil {
				return fmt.Errorf("record the host key of %s in %s: %w", hostport, file, err)
			}
			return nil
		}
		return err
	}
}

// pinFirstKey accepts the first host key it is shown and, after that,
// only the same key.
func pinFirstKey() ssh.HostKeyCallback {
	var mu sync.Mutex
	var pinned ssh.PublicKey
	return func(hostport string, _ net.Addr, key ssh.PublicKey) error {
		mu.Lock()
		defer mu.Unlock()
		if pinned == nil {
			pinned = key
			return nil
		}
		if !bytes.Equal(pinned.Marshal(), key.Marshal()) {
			return &HostKeyError{Host: hostport, Got: ssh.FingerprintSHA256(key), Changed: true, File: "(the build VM's first key)",
				Want: []string{ssh.FingerprintSHA256(pinned)}}
		}
		return nil
	}
}

func checkKnownHost(file, hostport string, remote net.Addr, key ssh.PublicKey) error {
	cb, err := knownHostsFile(file)
	if err != nil {
		return err
	}
	err = cb(hostport, remote, key)
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) {
		he := &HostKeyError{Host: hostport, Got: ssh.FingerprintSHA256(key), Changed: len(ke.Want) > 0, File: file}
		for _, w := range ke.Want {
			he.Want = append(he.Want, fmt.Sprintf("%s (line %d)", ssh.FingerprintSHA256(w.Key), w.Line))
		}
		return he
	}
	return err
}

// knownHostsFile reads file; a missing file knows no host.
func knownHostsFile(file string) (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %w", err)
	}
	return cb, nil
}

// knownAlgorithms returns the key algorithms that known_hosts holds for
// hostport, so that the host presents a key of a type we can check.
func knownAlgorithms(file, hostport string) []string {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	cb, err := knownHostsFile(file)
	if err != nil {
		return nil
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	probe, _ := ssh.NewPublicKey(pub)
	var ke *knownhosts.KeyError
	if err := cb(hostport, &net.TCPAddr{IP: net.IPv4zero}, probe); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, w := range ke.Want {
		t := w.Key.Type()
		add := []string{t}
		if t == ssh.KeyAlgoRSA {
			add = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, a := range add {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// appendKnownHost adds a line to the known_hosts file atomically (a new
// file with the old content and the line, renamed over it).
func appendKnownHost(file, line string) error {
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	return apply.WriteFileAtomic(file, append(old, line+"\n"...), 0o600)
}

// expandHome expands a leading ~/ in a local path.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}

// authMethods returns the ways to log in to a host: its key file (~/
// expanded; a relative path is from the project root), else ssh-agent,
// and its password.
func authMethods(spec *HostSpec, root string) ([]ssh.AuthMethod, func(), error) {
	var methods []ssh.AuthMethod
	cleanup := func() {}
	if spec.Key != "" {
		p, err := expandHome(spec.Key)
		if err != nil {
			return nil, cleanup, fmt.Errorf("key %s: %w", spec.Key, err)
		}
		if !filepath.IsAbs(p) && root != "" {
			p = filepath.Join(root, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, cleanup, fmt.Errorf("read key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, cleanup, fmt.Errorf("key %s: %w (studiorun reads unencrypted keys; load an encrypted one into ssh-agent instead)", p, err)
		}
		methods = append(methods, ssh.PublicKeys(signer))
	} else if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		c, err := net.Dial("unix", sock)
		if err == nil {
			cleanup = func() { c.Close() }
			methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(c).Signers))
		}
	}
	if spec.Password != nil {
		pw := spec.Password.Reveal()
		methods = append(methods, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			ans := make([]string, len(qs))
			for i := range ans {
				ans[i] = pw
			}
			return ans, nil
		}))
	}
	if len(methods) == 0 {
		return nil, cleanup, fmt.Errorf("no way to log in: give the host key= (a private key file) or password=, or run ssh-agent (SSH_AUTH_SOCK is not set)")
	}
	return methods, cleanup, nil
}

// conn is the SSH connection to one host, shared by all its tasks.
type conn struct {
	client *ssh.Client
	facts  HostFacts
	spec   *HostSpec
	sftp   hostSFTP // opened at the first upload
}

// close closes the connection and its SFTP client.
func (c *conn) close() {
	c.sftp.close()
	c.client.Close()
}

// dial connects to addr:port, retrying with backoff until timeout on
// errors that a booting guest gives (refused, unreachable, timeouts, a
// closed handshake); a host key that known_hosts refuses is never retried.
func (d *Driver) dial(ctx context.Context, who runtime.Address, spec *HostSpec, address string, port int, rep apply.Reporter) (*ssh.Client, error) {
	hostport := net.JoinHostPort(address, strconv.Itoa(port))
	auth, cleanup, err := authMethods(spec, d.projectRoot())
	if err != nil {
		return nil, err
	}
	defer cleanup()
	cfg := &ssh.ClientConfig{
		User:              spec.User,
		Auth:              auth,
		HostKeyCallback:   hostKeyCallback(d.knownHosts, d.opts.AcceptNewHostKeys),
		HostKeyAlgorithms: knownAlgorithms(d.knownHosts, hostport),
		Timeout:           10 * time.Second,
	}
	if spec.BuildOf != "" {
		// An image's build VM: a machine studiorun started seconds ago,
		// reached on a loopback port forward, whose fresh key no
		// known_hosts can hold. Its first key is pinned for the build and
		// never written to known_hosts (the port is reused by later builds).
		cfg.HostKeyCallback, cfg.HostKeyAlgorithms = pinFirstKey(), nil
	}
	deadline := time.Now().Add(d.opts.ConnectTimeout)
	wait := 500 * time.Millisecond
	reported := time.Time{}
	for {
		c, err := dialContext(ctx, hostport, cfg)
		if err == nil {
			return c, nil
		}
		var hk *HostKeyError
		if errors.As(err, &hk) || ctx.Err() != nil {
			return nil, err
		}
		if time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("connect to %s@%s (gave up after %s): %w", spec.User, hostport, d.opts.ConnectTimeout, err)
		}
		if rep != nil && time.Since(reported) > 10*time.Second {
			rep.Notef(who, "waiting for SSH on %s (%v)", hostport, err)
			reported = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func dialContext(ctx context.Context, hostport string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	dl := net.Dialer{Timeout: cfg.Timeout}
	nc, err := dl.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(nc, hostport, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// RunError is a remote command that failed.
type RunError struct {
	Status int
	Stderr string
}

func (e *RunError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		return fmt.Sprintf("exit status %d", e.Status)
	}
	if lines := strings.Split(msg, "\n"); len(lines) > 12 {
		msg = strings.Join(lines[len(lines)-12:], "\n")
	}
	return fmt.Sprintf("exit status %d: %s", e.Status, msg)
}

// exec runs a command line on the host (through the login user's shell),
// with stdin, and returns its standard output.
func (c *conn) exec(ctx context.Context, cmd string, stdin io.Reader) (string, error) {
	sess, err := c.client.NewSession()
	if err != nil {
		return "", fmt.Errorf("open a session: %w", err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	if stdin != nil {
		sess.Stdin = stdin
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sess.Signal(ssh.SIGKILL)
			sess.Close()
		case <-done:
		}
	}()
	err = sess.Run(cmd)
	close(done)
	var ee *ssh.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), &RunError{Status: ee.ExitStatus(), Stderr: stderr.String()}
	case err != nil:
		return stdout.String(), fmt.Errorf("run: %w", err)
	}
	return stdout.String(), nil
}

// sudoPassword is the error of a host whose sudo wants a password that
// the script does not give.
var errSudoPassword = errors.New("sudo asks for a password: give the host become_password=secret(...) or let its user use sudo without one (NOPASSWD)")

// run runs a shell script on the host, as root through sudo when the host
// becomes. The script goes on the command line; a large script without
// stdin goes on stdin instead. The become password, when sudo needs it,
// is fed on stdin before the rest (sudo -S reads one line), never on the
// command line.
func (c *conn) run(ctx context.Context, script string, stdin io.Reader) (string, error) {
	cmd := "sh -c " + Quote(script)
	if stdin == nil && len(script) > 64<<10 {
		cmd, stdin = "sh -s", strings.NewReader(script)
	}
	cmd, pw, err := c.become(cmd)
	if err != nil {
		return "", err
	}
	if pw != nil {
		if stdin == nil {
			stdin = pw
		} else {
			stdin = io.MultiReader(pw, stdin)
		}
	}
	out, err := c.exec(ctx, cmd, stdin)
	if err != nil {
		return out, c.redact(err)
	}
	return out, nil
}

// become returns a command line that runs cmd as root through sudo when
// the host becomes, and what to write first on its stdin: the become
// password (sudo -S reads one line), or nil.
func (c *conn) become(cmd string) (string, io.Reader, error) {
	if !c.spec.Become || c.facts.Root {
		return cmd, nil, nil
	}
	switch {
	case c.facts.SudoNoPassword:
		return "sudo -n -- " + cmd, nil, nil
	case c.spec.BecomePassword != nil:
		return "sudo -S -k -p '' -- " + cmd, strings.NewReader(c.spec.BecomePassword.Reveal() + "\n"), nil
	}
	return "", nil, errSudoPassword
}

// redact removes the host's secrets from an error.
func (c *conn) redact(err error) error {
	msg := err.Error()
	changed := false
	for _, s := range []*runtime.Secret{c.spec.Password, c.spec.BecomePassword} {
		if s != nil && s.Reveal() != "" && strings.Contains(msg, s.Reveal()) {
			msg = strings.ReplaceAll(msg, s.Reveal(), "(secret)")
			changed = true
		}
	}
	if changed {
		return errors.New(msg)
	}
	return err
}
