package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// notifier speaks systemd's sd_notify protocol (READY=1, STOPPING=1, RELOADING=1, STATUS=,
// WATCHDOG=1) over $NOTIFY_SOCKET. Outside systemd it does nothing.
type notifier struct {
	addr *net.UnixAddr
}

func newNotifier() *notifier {
	s := os.Getenv("NOTIFY_SOCKET")
	if s == "" {
		return &notifier{}
	}
	if s[0] == '@' {
		s = "\x00" + s[1:]
	}
	return &notifier{addr: &net.UnixAddr{Name: s, Net: "unixgram"}}
}

func (n *notifier) send(state string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// watchdogInterval returns half of systemd's WatchdogSec for this process, or 0.
func watchdogInterval() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}
