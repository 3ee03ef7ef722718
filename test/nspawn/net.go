package nspawn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// makeNetwork creates the bridge namespace (bridge br0, multicast snooping off so VRRP
// adverts flood), the operator namespace and one namespace per host, each joined by a
// veth pair whose lab end is named host0 (operator: op0). No namespace gets a route out
// (real-Kubernetes hosts get a default route to a dead end, see below).
func (l *Lab) makeNetwork(ctx context.Context) error {
	addNS := func(name string) error {
		if err := run(ctx, "ip", "netns", "add", name); err != nil {
			return err
		}
		l.mu.Lock()
		l.netns = append(l.netns, name)
		l.recordOwnerLocked()
		l.mu.Unlock()
		return run(ctx, "ip", "-n", name, "link", "set", "lo", "up")
	}
	if err := addNS(l.BridgeNS); err != nil {
		return err
	}
	br := []string{"-n", l.BridgeNS}
	if err := run(ctx, "ip", append(br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0", "stp_state", "0", "forward_delay", "0")...); err != nil {
		return err
	}
	if err := run(ctx, "ip", append(br, "link", "set", "br0", "up")...); err != nil {
		return err
	}
	attach := func(ns, brSide, inside string, addr string) error {
		if err := addNS(ns); err != nil {
			return err
		}
		if err := run(ctx, "ip", append(br, "link", "add", brSide, "type", "veth", "peer", "name", inside, "netns", ns)...); err != nil {
			return err
		}
		if err := run(ctx, "ip", append(br, "link", "set", brSide, "master", "br0", "up")...); err != nil {
			return err
		}
		if err := run(ctx, "ip", "-n", ns, "addr", "add", addr, "dev", inside); err != nil {
			return err
		}
		return run(ctx, "ip", "-n", ns, "link", "set", inside, "up")
	}
	bits := strconv.Itoa(l.Subnet.Bits())
	if err := attach(l.OperatorNS, l.Prefix+"op", "op0", l.OperatorAddr.String()+"/"+bits); err != nil {
		return err
	}
	for i, h := range l.Hosts {
		if err := attach(h.NetNS, fmt.Sprintf("%sh%d", l.Prefix, i+1), "host0", h.Addr.String()+"/"+bits); err != nil {
			return err
		}
	}
	if l.opts.K8s != nil {
		// Real Kubernetes needs a default route, as every real host has one: without it a
		// node cannot even connect to a Service's ClusterIP (the route lookup fails before
		// kube-proxy's DNAT). The gateway, .1 on the bridge, is a dead end: its namespace has
		// no other link and does not forward.
		gw := nthAddr(l.Subnet, 1).String()
		if err := run(ctx, "ip", append(br, "addr", "add", gw+"/"+bits, "dev", "br0")...); err != nil {
			return err
		}
		for _, h := range l.Hosts {
			if err := run(ctx, "ip", "-n", h.NetNS, "route", "add", "default", "via", gw, "dev", "host0"); err != nil {
				return err
			}
		}
	}
	return nil
}

// inNetNS runs fn on an OS thread switched into the named network namespace. Sockets
// created by fn stay in that namespace after the thread switches back.
func inNetNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime ends it with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// serveHTTP serves Dir/www on OperatorAddr:8080 from a listener opened inside the
// operator namespace; the server goroutines run in this process until Close.
func (l *Lab) serveHTTP() error {
	addr := net.JoinHostPort(l.OperatorAddr.String(), "8080")
	var ln net.Listener
	err := inNetNS(l.OperatorNS, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return fmt.Errorf("listen %s in %s: %w", addr, l.OperatorNS, err)
	}
	l.HTTPBase = "http://" + addr + "/"
	l.srv = &http.Server{Handler: http.FileServer(http.Dir(filepath.Join(l.Dir, "www"))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = l.srv.Serve(ln) }()
	return nil
}
