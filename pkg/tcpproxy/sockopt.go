package tcpproxy

import (
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
	if ka < 0 {
		return net.KeepAliveConfig{Enable: false}
	}
	if ka == 0 {
		ka = DefaultKeepAlive
	}
	iv := ka / 3
	if iv < time.Second {
		iv = time.Second
	}
	return net.KeepAliveConfig{Enable: true, Idle: ka, Interval: iv, Count: 3}
}

// tcpCounters reads bytes_received and bytes_acked of a socket via
// TCP_INFO (without touching the connection's data path).
func tcpCounters(rc syscall.RawConn) (received, acked uint64, ok bool) {
	if rc == nil {
		return 0, 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err != nil || gerr != nil || info == nil {
		return 0, 0, false
	}
	received, acked = info.Bytes_received, info.Bytes_acked
	// A FIN takes one sequence number, which these counters include.
	switch info.State {
	case tcpCloseWait, tcpLastAck, tcpClosing, tcpTimeWait: // peer's FIN received
		if received > 0 {
			received--
		}
	}
	switch info.State {
	case tcpFinWait2, tcpTimeWait: // our FIN acknowledged
		if acked > 0 {
			acked--
		}
	}
	return received, acked, true
}

// Linux TCP states (include/net/tcp_states.h).
const (
	tcpFinWait2  = 5
	tcpTimeWait  = 6
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)
