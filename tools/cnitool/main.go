// Command cnitool runs a CNI network configuration against a network
// namespace, the way a container runtime would, through Debian's libcni
// (golang-github-appc-cni-dev). It exists so the end-to-end tests of nsveth
// exercise the plugin through the real client library rather than through
// hand-built environments.
//
// Usage:
//
//	cnitool [-i IFNAME] [--cache-dir DIR] add|check|del NETWORK NETNS
//	cnitool [--cache-dir DIR] gc|status NETWORK
//
// Environment, as for upstream cnitool: NETCONFPATH (default /etc/cni/net.d),
// CNI_PATH, CNI_ARGS ("K=V;K=V"), CAP_ARGS (a JSON object of capability
// arguments), CNI_IFNAME (default eth0). Additionally CNI_CACHE_DIR (or
// --cache-dir) moves the libcni result cache away from /var/lib/cni, and for
// gc CNITOOL_VALID_ATTACHMENTS may hold a JSON list of
// {"containerID": ..., "ifname": ...} attachments that must be kept (upstream
// cnitool keeps none).
//
// The libcni shipped by Debian bookworm (1.1.2) predates CNI 1.1: it has no
// GCNetworkList or GetStatusNetworkList and cannot parse a 1.1.0 result. gc and
// status are therefore built here from the library's exported pieces (config
// loading, InjectConf, DelNetworkList, invoke.ExecPluginWithoutResult) and its
// documented cache layout; see gc and status below.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

const (
	defaultNetDir   = "/etc/cni/net.d"
	defaultIfName   = "eth0"
	cacheKindV1     = "cniCacheV1"
	gcMinVersion    = "1.1.0"
	validAttachKey  = "cni.dev/valid-attachments"
	legacyAttachKey = "cni.dev/attachments" // the name spec 1.1.0's text used
)

type options struct {
	ifName   string
	cacheDir string
	command  string
	network  string
	netns    string
}

func usage() string {
	return "usage: cnitool [-i IFNAME] [--cache-dir DIR] add|check|del NETWORK NETNS\n" +
		"       cnitool [--cache-dir DIR] gc|status NETWORK"
}

func parseArgs(argv []string) (options, error) {
	opts := options{ifName: os.Getenv("CNI_IFNAME"), cacheDir: os.Getenv("CNI_CACHE_DIR")}
	if opts.ifName == "" {
		opts.ifName = defaultIfName
	}
	var positional []string
	for i := 0; i < len(argv); i++ {
		arg := argv[i]
		takeValue := func() (string, error) {
			if i+1 >= len(argv) {
				return "", fmt.Errorf("option %s needs a value", arg)
			}
			i++
			return argv[i], nil
		}
		var err error
		switch {
		case arg == "-i" || arg == "--ifname":
			opts.ifName, err = takeValue()
		case strings.HasPrefix(arg, "--ifname="):
			opts.ifName = strings.TrimPrefix(arg, "--ifname=")
		case arg == "--cache-dir":
			opts.cacheDir, err = takeValue()
		case strings.HasPrefix(arg, "--cache-dir="):
			opts.cacheDir = strings.TrimPrefix(arg, "--cache-dir=")
		case arg == "-h" || arg == "--help":
			return opts, errors.New(usage())
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			return opts, fmt.Errorf("unknown option %s\n%s", arg, usage())
		default:
			positional = append(positional, arg)
		}
		if err != nil {
			return opts, err
		}
	}
	if len(positional) < 1 {
		return opts, errors.New(usage())
	}
	opts.command = positional[0]
	switch opts.command {
	case "add", "check", "del":
		if len(positional) != 3 {
			return opts, errors.New(usage())
		}
		opts.network, opts.netns = positional[1], positional[2]
	case "gc", "status":
		if len(positional) != 2 {
			return opts, errors.New(usage())
		}
		opts.network = positional[1]
	default:
		return opts, fmt.Errorf("unknown command %q\n%s", opts.command, usage())
	}
	return opts, nil
}

// containerID derives the ID from the netns path as upstream cnitool does, so
// repeated calls for one netns address the same attachment.
func containerID(netns string) (string, error) {
	abs, err := filepath.Abs(netns)
	if err != nil {
		return "", err
	}
	sum := sha512.Sum512([]byte(abs))
	return "cnitool-" + hex.EncodeToString(sum[:10]), nil
}

// parseCNIArgs splits "K=V;K=V" into the pairs libcni passes on as CNI_ARGS.
func parseCNIArgs(raw string) ([][2]string, error) {
	var pairs [][2]string
	if raw == "" {
		return pairs, nil
	}
	for _, item := range strings.Split(raw, ";") {
		kv := strings.SplitN(item, "=", 2)
		if len(kv) != 2 {
			return nil, fmt.Errorf("invalid CNI_ARGS pair %q", item)
		}
		pairs = append(pairs, [2]string{kv[0], kv[1]})
	}
	return pairs, nil
}

func parseCapArgs(raw string) (map[string]interface{}, error) {
	caps := map[string]interface{}{}
	if raw == "" {
		return caps, nil
	}
	if err := json.Unmarshal([]byte(raw), &caps); err != nil {
		return nil, fmt.Errorf("CAP_ARGS is not a JSON object: %w", err)
	}
	return caps, nil
}

func netDir() string {
	if dir := os.Getenv("NETCONFPATH"); dir != "" {
		return dir
	}
	return defaultNetDir
}

func pluginPath() []string {
	return filepath.SplitList(os.Getenv("CNI_PATH"))
}

func run(ctx context.Context, opts options) error {
	list, err := libcni.LoadConfList(netDir(), opts.network)
	if err != nil {
		return fmt.Errorf("loading network %q from %s: %w", opts.network, netDir(), err)
	}
	cni := libcni.NewCNIConfigWithCacheDir(pluginPath(), opts.cacheDir, nil)

	switch opts.command {
	case "gc":
		return gc(ctx, cni, list, opts)
	case "status":
		return status(ctx, cni, list)
	}

	cniArgs, err := parseCNIArgs(os.Getenv("CNI_ARGS"))
	if err != nil {
		return err
	}
	capArgs, err := parseCapArgs(os.Getenv("CAP_ARGS"))
	if err != nil {
		return err
	}
	id, err := containerID(opts.netns)
	if err != nil {
		return err
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    id,
		NetNS:          opts.netns,
		IfName:         opts.ifName,
		Args:           cniArgs,
		CapabilityArgs: capArgs,
	}

	switch opts.command {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		return result.Print()
	case "check":
		return cni.CheckNetworkList(ctx, list, rt)
	case "del":
		return cni.DelNetworkList(ctx, list, rt)
	}
	return fmt.Errorf("unknown command %q", opts.command)
}

// attachment is one entry of the GC valid-attachments list (CNI 1.1).
type attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// cachedAttachment holds the fields of a libcni cache file that gc needs.
type cachedAttachment struct {
	Kind           string                 `json:"kind"`
	ContainerID    string                 `json:"containerId"`
	Config         []byte                 `json:"config"`
	IfName         string                 `json:"ifName"`
	NetworkName    string                 `json:"networkName"`
	NetNS          string                 `json:"netns,omitempty"`
	CniArgs        [][2]string            `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs,omitempty"`
}

func effectiveCacheDir(opts options) string {
	if opts.cacheDir != "" {
		return opts.cacheDir
	}
	return libcni.CacheDir
}

// cachedAttachments reads every cache file libcni wrote for the network.
// libcni 1.1.2 names them <network>-<containerID>-<ifname> under results/.
func cachedAttachments(cacheDir, network string) ([]cachedAttachment, error) {
	dir := filepath.Join(cacheDir, "results")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var found []cachedAttachment
	for _, entry := range entries {
		if entry.IsDir() || !strings.HasPrefix(entry.Name(), network+"-") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, entry.Name()))
		if err != nil {
			return nil, err
		}
		var cached cachedAttachment
		if err := json.Unmarshal(data, &cached); err != nil || cached.Kind != cacheKindV1 {
			fmt.Fprintf(os.Stderr, "cnitool: gc: skipping unreadable cache file %s\n", entry.Name())
			continue
		}
		if cached.NetworkName == network {
			found = append(found, cached)
		}
	}
	return found, nil
}

func validAttachments() ([]attachment, error) {
	valid := []attachment{}
	if raw := os.Getenv("CNITOOL_VALID_ATTACHMENTS"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &valid); err != nil {
			return nil, fmt.Errorf("CNITOOL_VALID_ATTACHMENTS is not a JSON list of attachments: %w", err)
		}
	}
	return valid, nil
}

// gc follows CNI 1.1 GC semantics with the tools libcni 1.1.2 offers: every
// cached attachment of the network that is not valid is deleted with the
// config it was added with, then, when the network's cniVersion is at least
// 1.1.0, every plugin of the list receives GC with the valid attachments.
func gc(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, opts options) error {
	valid, err := validAttachments()
	if err != nil {
		return err
	}
	keep := map[attachment]bool{}
	for _, a := range valid {
		keep[a] = true
	}
	cached, err := cachedAttachments(effectiveCacheDir(opts), list.Name)
	if err != nil {
		return err
	}
	var errs []string
	for _, c := range cached {
		if keep[attachment{c.ContainerID, c.IfName}] {
			continue
		}
		cachedList, err := libcni.ConfListFromBytes(c.Config)
		if err != nil {
			errs = append(errs, fmt.Sprintf("cached config of %s/%s: %v", c.ContainerID, c.IfName, err))
			continue
		}
		rt := &libcni.RuntimeConf{
			ContainerID:    c.ContainerID,
			NetNS:          c.NetNS,
			IfName:         c.IfName,
			Args:           c.CniArgs,
			CapabilityArgs: c.CapabilityArgs,
		}
		if err := cni.DelNetworkList(ctx, cachedList, rt); err != nil {
			errs = append(errs, fmt.Sprintf("DEL of stale %s/%s: %v", c.ContainerID, c.IfName, err))
		}
	}

	atLeast, err := version.GreaterThanOrEqualTo(list.CNIVersion, gcMinVersion)
	if err != nil {
		return err
	}
	if !atLeast {
		fmt.Fprintf(os.Stderr, "cnitool: gc: network %q has cniVersion %s < %s; plugins not called\n",
			list.Name, list.CNIVersion, gcMinVersion)
	} else {
		extra := map[string]interface{}{
			"name":          list.Name,
			"cniVersion":    list.CNIVersion,
			validAttachKey:  valid,
			legacyAttachKey: valid,
		}
		for _, net := range list.Plugins {
			if err := execNoResult(ctx, cni, net, extra, "GC"); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// status sends STATUS to every plugin of a 1.1.0+ list and fails on the
// first plugin that reports itself unavailable.
func status(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
	atLeast, err := version.GreaterThanOrEqualTo(list.CNIVersion, gcMinVersion)
	if err != nil {
		return err
	}
	if !atLeast {
		fmt.Fprintf(os.Stderr, "cnitool: status: network %q has cniVersion %s < %s; plugins not called\n",
			list.Name, list.CNIVersion, gcMinVersion)
		return nil
	}
	extra := map[string]interface{}{"name": list.Name, "cniVersion": list.CNIVersion}
	for _, net := range list.Plugins {
		if err := execNoResult(ctx, cni, net, extra, "STATUS"); err != nil {
			return err
		}
	}
	return nil
}

func execNoResult(ctx context.Context, cni *libcni.CNIConfig, net *libcni.NetworkConfig,
	extra map[string]interface{}, command string) error {
	conf, err := libcni.InjectConf(net, extra)
	if err != nil {
		return fmt.Errorf("plugin type=%q: building %s config: %w", net.Network.Type, command, err)
	}
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}}
	path, err := exec.FindInPath(net.Network.Type, cni.Path)
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: command, Path: strings.Join(cni.Path, string(os.PathListSeparator))}
	if err := invoke.ExecPluginWithoutResult(ctx, path, conf.Bytes, args, exec); err != nil {
		return fmt.Errorf("plugin type=%q failed (%s): %w", net.Network.Type, strings.ToLower(command), err)
	}
	return nil
}

func main() {
	opts, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := run(context.Background(), opts); err != nil {
		fmt.Fprintf(os.Stderr, "cnitool: %s: %v\n", opts.command, err)
		os.Exit(1)
	}
}
