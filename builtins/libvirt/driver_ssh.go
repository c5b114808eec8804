package libvirt

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// connectSSH connects to libvirtd on another host through SSH, as
// qemu+ssh://[user@]host[:port]/system does, with golang.org/x/crypto/ssh
// rather than an ssh binary: keys from ssh-agent (SSH_AUTH_SOCK) and the
// first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa (or ?keyfile=PATH); the
// host key must be in ~/.ssh/known_hosts (or ?known_hosts=PATH): an
// unknown or changed key is refused, never added. ~ is $HOME. The remote
// libvirtd socket is /var/run/libvirt/libvirt-sock, or ?socket=PATH.
func connectSSH(u *url.URL) (*golibvirt.Libvirt, error) {
	q := u.Query()
	home, err := os.UserHomeDir()
	if err != nil && (q.Get("known_hosts") == "" || q.Get("keyfile") == "") {
		return nil, fmt.Errorf("find ~/.ssh: %w", err)
	}
	knownHosts := q.Get("known_hosts")
	if knownHosts == "" {
		knownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	if _, err := os.Stat(knownHosts); err != nil {
		return nil, fmt.Errorf("host keys: %w (studiorun checks %s's key against it; add it with ssh-keyscan or by logging in once with ssh)", err, u.Hostname())
	}
	opts := []dialers.SSHOption{dialers.UseKnownHostsFile(knownHosts)}
	keyFile := q.Get("keyfile")
	if keyFile == "" {
		for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			if p := filepath.Join(home, ".ssh", name); fileExists(p) {
				keyFile = p
				break
			}
		}
	}
	if keyFile != "" {
		opts = append(opts, dialers.UseKeyFile(keyFile))
	} else if os.Getenv("SSH_AUTH_SOCK") == "" {
		return nil, errors.New("no SSH key: none of ~/.ssh/id_ed25519, id_ecdsa, id_rsa exists and no ssh-agent is running (SSH_AUTH_SOCK)")
	}
	if port := u.Port(); port != "" {
		opts = append(opts, dialers.UseSSHPort(port))
	}
	if user := u.User.Username(); user != "" {
		opts = append(opts, dialers.UseSSHUsername(user))
	}
	if socket := q.Get("socket"); socket != "" {
		opts = append(opts, dialers.WithRemoteSocket(socket))
	}
	l := golibvirt.NewWithDialer(dialers.NewSSH(u.Hostname(), opts...))
	if err := l.ConnectToURI(golibvirt.RemoteURI(u)); err != nil {
		return nil, err
	}
	return l, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
