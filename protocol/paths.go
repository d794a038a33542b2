package protocol

import (
	"fmt"
	"strconv"
	"strings"
)

// The ZooKeeper tree, relative to the chroot. Every zkchat process names its
// nodes through Paths; no other package spells these strings.
const (
	requestDir  = "/request"
	enrollDir   = "/request/enroll"
	quitDir     = "/request/quit"
	registryDir = "/registry"
	onlineDir   = "/online"
	// electionDir holds the managers' ephemeral sequential election nodes.
	// It is not in the spec's tree: only managers read it.
	electionDir = "/election"
	// accountsDir binds ids to accounts of a front end (an IRC services
	// account): data is the account name. Not in the spec's tree: front ends
	// that verify identity read and write it.
	accountsDir = "/accounts"
	// bridgesDir holds the live IRC bridges that share a channel: one
	// ephemeral node per bridge, /bridges/<bridge-id>, in the bridge's own
	// session (data: JSON with its IRC nick and channel). Not in the spec's
	// tree: only bridges read it.
	bridgesDir = "/bridges"
)

// Paths names the nodes of the zkchat tree under one chroot ("" for none).
type Paths struct {
	root string // "" or "/a/b", never ending in '/'
}

// NewPaths returns the tree under chroot, which is "" or an absolute path.
func NewPaths(chroot string) (Paths, error) {
	chroot = strings.TrimRight(chroot, "/")
	if chroot != "" {
		if !strings.HasPrefix(chroot, "/") {
			return Paths{}, fmt.Errorf("chroot %q: must start with /", chroot)
		}
		for _, part := range strings.Split(chroot[1:], "/") {
			if part == "" || part == "." || part == ".." {
				return Paths{}, fmt.Errorf("chroot %q: empty, . or .. element", chroot)
			}
		}
	}
	return Paths{root: chroot}, nil
}

// Root is the chroot, or "/" without one.
func (p Paths) Root() string {
	if p.root == "" {
		return "/"
	}
	return p.root
}

func (p Paths) EnrollRequests() string { return p.root + enrollDir }
func (p Paths) QuitRequests() string   { return p.root + quitDir }
func (p Paths) Registry() string       { return p.root + registryDir }
func (p Paths) Online() string         { return p.root + onlineDir }
func (p Paths) Election() string       { return p.root + electionDir }

// ElectionSeq is the sequence number of an election node's name (a
// protected ephemeral sequential node made as Election()+"/n_": the
// client's prefix, "n_", then the number), by which the managers order
// themselves: the lowest leads.
func ElectionSeq(name string) string {
	if i := strings.LastIndex(name, "n_"); i >= 0 {
		return name[i+2:]
	}
	return name
}
func (p Paths) Accounts() string { return p.root + accountsDir }
func (p Paths) Bridges() string  { return p.root + bridgesDir }

// Account is the node binding id to a front end's account.
func (p Paths) Account(id string) string { return p.Accounts() + "/" + id }

// Bridge is the ephemeral node of a live IRC bridge (bridge ids are ids:
// ValidateID).
func (p Paths) Bridge(bridgeID string) string { return p.Bridges() + "/" + bridgeID }

// Enroll is the registration request node of id.
func (p Paths) Enroll(id string) string { return p.EnrollRequests() + "/" + id }

// Quit is the unregistration request node of id.
func (p Paths) Quit(id string) string { return p.QuitRequests() + "/" + id }

// Registered is the registry node of id.
func (p Paths) Registered(id string) string { return p.Registry() + "/" + id }

// OnlineNode is the ephemeral presence node of id.
func (p Paths) OnlineNode(id string) string { return p.Online() + "/" + id }

// Persistent lists the persistent nodes of the tree, parents first, as
// createZkTreeStructure creates them: the chroot's own path elements, then
// /request, /request/enroll, /request/quit, /registry, /online, /election,
// /accounts, /bridges.
func (p Paths) Persistent() []string {
	var out []string
	if p.root != "" {
		acc := ""
		for _, part := range strings.Split(p.root[1:], "/") {
			acc += "/" + part
			out = append(out, acc)
		}
	}
	for _, d := range []string{requestDir, enrollDir, quitDir, registryDir, onlineDir, electionDir, accountsDir, bridgesDir} {
		out = append(out, p.root+d)
	}
	return out
}

// Status is a request's status code, stored as ASCII decimal in the node.
type Status int

// The status codes of the spec.
const (
	StatusPending Status = -1 // written by the worker
	StatusFailed  Status = 0
	StatusDone    Status = 1 // registered now / unregistered now
	StatusAlready Status = 2 // was already registered / was not registered
)

// OK reports whether s means success (1 or 2).
func (s Status) OK() bool { return s == StatusDone || s == StatusAlready }

// Bytes is the node data for s.
func (s Status) Bytes() []byte { return []byte(strconv.Itoa(int(s))) }

func (s Status) String() string {
	switch s {
	case StatusPending:
		return "pending(-1)"
	case StatusFailed:
		return "failed(0)"
	case StatusDone:
		return "done(1)"
	case StatusAlready:
		return "already(2)"
	}
	return "unknown(" + strconv.Itoa(int(s)) + ")"
}

// ParseStatus reads a request node's data. Surrounding ASCII white space is
// allowed (zkCli.sh users type it); anything but -1, 0, 1 or 2 wraps
// ErrBadRequest.
func ParseStatus(data []byte) (Status, error) {
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n < -1 || n > 2 {
		if len(data) > 16 {
			data = append(data[:16:16], "…"...)
		}
		return 0, fmt.Errorf("%w: %q", ErrBadRequest, data)
	}
	return Status(n), nil
}

// ConnectPaths is the tree named by a ZooKeeper connection string (its
// chroot), after SplitConnect's checks.
func ConnectPaths(connect string) (Paths, error) {
	_, chroot, err := SplitConnect(connect)
	if err != nil {
		return Paths{}, err
	}
	return NewPaths(chroot)
}

// SplitConnect splits a ZooKeeper connection string
// "host1:2181,host2:2181/chroot" into its servers and chroot ("" for none).
func SplitConnect(connect string) (servers []string, chroot string, err error) {
	hosts := connect
	if i := strings.IndexByte(connect, '/'); i >= 0 {
		hosts, chroot = connect[:i], connect[i:]
	}
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			servers = append(servers, h)
		}
	}
	if len(servers) == 0 {
		return nil, "", fmt.Errorf("zookeeper connection string %q: no server", connect)
	}
	if _, err := NewPaths(chroot); err != nil {
		return nil, "", fmt.Errorf("zookeeper connection string %q: %w", connect, err)
	}
	return servers, strings.TrimRight(chroot, "/"), nil
}
