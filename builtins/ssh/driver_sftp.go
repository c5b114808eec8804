package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// hostSFTP is the SFTP client of a host's connection, on a session of
// that connection (no second connection): opened at the first upload of
// the run, reused by the next ones and closed with the connection.
type hostSFTP struct {
	opened bool
	client *sftp.Client
	sess   *ssh.Session // the session running sftp-server through sudo; nil for the subsystem (the client owns it)
	why    string       // why the host has no usable SFTP (client nil)
}

func (s *hostSFTP) close() {
	if s.client != nil {
		s.client.Close()
	}
	if s.sess != nil {
		s.sess.Close()
	}
	*s = hostSFTP{}
}

// sftpClient returns the host's SFTP client, opening it at the first
// call, or nil and why the host has none usable.
func (c *conn) sftpClient(ctx context.Context) (*sftp.Client, string) {
	if !c.sftp.opened {
		cl, sess, err := c.openSFTP(ctx)
		c.sftp = hostSFTP{opened: true, client: cl, sess: sess}
		if err != nil {
			c.sftp.why = c.redact(err).Error()
		}
	}
	return c.sftp.client, c.sftp.why
}

// openSFTP starts an SFTP server with the task's privileges: the sftp
// subsystem when the login user is the one tasks run as, else the host's
// sftp-server program through the same sudo as the scripts (the subsystem
// would write as the login user).
func (c *conn) openSFTP(ctx context.Context) (*sftp.Client, *ssh.Session, error) {
	opts := []sftp.ClientOption{sftp.UseConcurrentWrites(true)}
	var cl *sftp.Client
	var sess *ssh.Session
	if !c.spec.Become || c.facts.Root {
		var err error
		if cl, err = sftp.NewClient(c.client, opts...); err != nil {
			return nil, nil, fmt.Errorf("the sftp subsystem did not start: %w", err)
		}
	} else {
		if c.facts.SFTPServer == "" {
			return nil, nil, errors.New("no sftp-server program on the host to run through sudo")
		}
		var err error
		if cl, sess, err = c.startSFTPServer(ctx, opts); err != nil {
			return nil, nil, fmt.Errorf("%s through sudo did not start: %w", c.facts.SFTPServer, err)
		}
	}
	if v, ok := cl.HasExtension("fsync@openssh.com"); !ok || v != "1" {
		cl.Close()
		if sess != nil {
			sess.Close()
		}
		return nil, nil, errors.New("the host's SFTP server cannot fsync (no fsync@openssh.com)")
	}
	return cl, sess, nil
}

// startSFTPServer runs the host's sftp-server program through sudo on a
// new session and speaks SFTP on its stdin and stdout.
func (c *conn) startSFTPServer(ctx context.Context, opts []sftp.ClientOption) (*sftp.Client, *ssh.Session, error) {
	cmd, pw, err := c.become(Quote(c.facts.SFTPServer))
	if err != nil {
		return nil, nil, err
	}
	sess, err := c.client.NewSession()
	if err != nil {
		return nil, nil, fmt.Errorf("open a session: %w", err)
	}
	w, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	stderr := &limitedBuffer{max: 4 << 10}
	sess.Stderr = stderr
	if err := sess.Start(cmd); err != nil {
		sess.Close()
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	if pw != nil {
		if _, err := io.Copy(w, pw); err != nil {
			sess.Close()
			return nil, nil, err
		}
	}
	cl, err := sftp.NewClientPipe(r, w, opts...)
	if err != nil {
		// The server is gone or speaks no SFTP: end it, then show what
		// it (or sudo) said.
		w.Close()
		sess.Wait()
		sess.Close()
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, nil, fmt.Errorf("%w: %s", err, msg)
		}
		return nil, nil, err
	}
	return cl, sess, nil
}

// sendUpload puts an upload's file on the host before its script runs and
// returns the script's standard input (see uploadScript): over SFTP, the
// suffix of the temporary file written and fsynced beside the
// destination; without SFTP (said in a note), an empty line and the file
// itself. done, called once the script has run, closes the local file and
// removes the temporary file if the task failed.
func (c *conn) sendUpload(ctx context.Context, host string, addr runtime.Address, u *UploadFile, rep apply.Reporter) (stdin io.Reader, done func(failed bool), err error) {
	wrap := func(err error) error { return fmt.Errorf("upload %s to %s:%s: %w", u.Src, host, u.Dest, err) }
	f, err := os.Open(u.Src)
	if err != nil {
		return nil, nil, wrap(err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, wrap(err)
	}
	progress := &progressReader{r: f, addr: addr, rep: rep, total: st.Size(), step: "upload " + filepath.Base(u.Src)}
	sc, why := c.sftpClient(ctx)
	if sc == nil {
		if rep != nil {
			rep.Notef(addr, "upload streamed on the script's stdin: no SFTP (%s)", why)
		}
		return io.MultiReader(strings.NewReader("\n"), progress), func(bool) { f.Close() }, nil
	}
	// Cancelling closes the local file, which ends the transfer.
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	defer f.Close()
	token, tmp, err := writeTemp(sc, u, progress, st.Size())
	if err != nil {
		return nil, nil, wrap(err)
	}
	return strings.NewReader(token + "\n"), func(failed bool) {
		if failed {
			sc.Remove(tmp) // the script's trap removed it, unless it did not run
		}
	}, nil
}

// writeTemp writes size bytes of r to a new temporary file beside u.Dest
// (mode 0600, fsynced) and returns its random suffix and path; on failure
// it removes the file.
func writeTemp(sc *sftp.Client, u *UploadFile, r io.Reader, size int64) (token, tmp string, err error) {
	dir := parentDir(u.Dest)
	if u.MakeDir {
		if err := sc.MkdirAll(dir); err != nil {
			return "", "", fmt.Errorf("make directory %s: %w", dir, err)
		}
	}
	token = randomHex(uploadTokenLen)
	tmp = dir + "/.studiorun." + token
	w, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("directory %s does not exist", dir)
	}
	if err != nil {
		return "", "", fmt.Errorf("create %s: %w", tmp, err)
	}
	err = fill(w, r, size)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", tmp, cerr)
	}
	if err != nil {
		if rerr := sc.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("%w (and removing %s: %v)", err, tmp, rerr)
		}
		return "", "", err
	}
	return token, tmp, nil
}

// fill writes size bytes of r to w (mode 0600 first: the content is not
// readable before the script gives it its mode) and fsyncs it.
func fill(w *sftp.File, r io.Reader, size int64) error {
	if err := w.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", w.Name(), err)
	}
	// A LimitedReader tells ReadFrom the size: it sends the packets
	// concurrently.
	n, err := w.ReadFrom(&io.LimitedReader{R: r, N: size})
	if err != nil {
		return fmt.Errorf("write %s: %w", w.Name(), err)
	}
	if n != size {
		return fmt.Errorf("write %s: the local file shrank while it was sent (%d of %d bytes)", w.Name(), n, size)
	}
	if err := w.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", w.Name(), err)
	}
	return nil
}

// limitedBuffer keeps the first max bytes written to it, for the
// standard error of a command that runs on.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
