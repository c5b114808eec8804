package ssh

// The ssh driver (connections with host-key checking, facts, and each task
// read, diffed and changed over one SSH connection per host) lands with
// the SSH task engine, issue #4.
