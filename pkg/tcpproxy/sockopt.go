package tcpproxy

import (
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// freebindControl sets IP_FREEBIND (and IPV6_FREEBIND) before bind.
func freebindControl(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		switch network {
		case "tcp6":
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
		default:
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return &net.OpError{Op: "setsockopt IP_FREEBIND", Net: network, Err: serr}
	}
	return nil
}

// keepAliveConfig turns Config.KeepAlive into a net.KeepAliveConfig.
func keepAliveConfig(ka time.Duration) net.KeepAliveConfig {
	if ka <= 0 {
		return net.KeepAliveConfig{Enable: false}
	}
	iv := ka / 3
	if iv < time.Second {
		iv = time.Second
	}
	return net.KeepAliveConfig{Enable: true, Idle: ka, Interval: iv, Count: 3}
}

// fdsPerConn is the file descriptors one proxied connection needs: the
// client and backend sockets (an idle connection holds only these), plus,
// while a goroutine copies a direction (large transfers, a slow reader),
// its duplicates of the two sockets and a splice pipe (4 more).
const fdsPerConn = 4

// ensureFileLimit raises RLIMIT_NOFILE (soft, and hard when permitted) to
// what maxConns connections need. It returns the resulting soft limit and
// the need (0 when maxConns is 0, no cap).
func ensureFileLimit(maxConns int) (limit, need uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0
	}
	if maxConns <= 0 {
		return rl.Cur, 0
	}
	need = uint64(maxConns)*fdsPerConn + 1024
	if rl.Cur >= need {
		return rl.Cur, need
	}
	want := rl
	want.Cur = need
	want.Max = max(rl.Max, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return need, need
	}
	want = rl
	want.Cur = rl.Max // raising the hard limit needs CAP_SYS_RESOURCE
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return rl.Max, need
	}
	return rl.Cur, need
}

// localResourceError reports errors that say this host is out of
// resources (not that the backend is unreachable).
func localResourceError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
