package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/vipd-project/vipd/pkg/vrrp"
)

// RestartRequired lists, as YAML field names, the settings that differ between the running
// configuration and the new one and that a reload (SIGHUP, systemctl reload) cannot apply:
// vipd refuses such a reload as a whole and keeps running on the old file; bootstrap restarts
// vipd instead of reloading it. It is the one list: cmd/vipd's reload and pkg/phases both call
// it. Everything else (priority, preemption, advert interval, GARP, unicast peers, backends,
// balance, timeouts, health checks, log level) is applied live.
func RestartRequired(old, nc *Config) []string {
	var out []string
	diff := func(field string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, field)
		}
	}
	diff("node_name", old.NodeName, nc.NodeName)
	diff("control_socket", old.ControlSocket, nc.ControlSocket)
	diff("state_file", old.StateFile, nc.StateFile) // read once at start
	diff("log_format", old.LogFormat, nc.LogFormat) // the logger's handler is built at start

	// The router's sockets, its VIP set and its identity on the link: pkg/vrrp's own list.
	out = append(out, vrrp.RestartFields(old.VRRPConfig(), nc.VRRPConfig())...)

	switch op, np := old.Proxy, nc.Proxy; {
	case (op == nil) != (np == nil):
		out = append(out, "proxy")
	case op != nil:
		diff("proxy.listen", op.Listen, np.Listen)
		// The proxy's VRRP track is created with its weight at start.
		diff("proxy.track_weight", old.TrackWeight(), nc.TrackWeight())
	}
	// The stats server is built once (its page refresh and its password with it).
	diff("stats.listen", old.Stats.Listen, nc.Stats.Listen)
	diff("stats.refresh", old.Stats.Refresh, nc.Stats.Refresh)
	diff("stats.basic_auth", old.StatsConfig(nil).BasicAuth, nc.StatsConfig(nil).BasicAuth)

	// The gossip member is built once: any change of the section needs a restart.
	oc, ncl := old.ClusterConfig(), nc.ClusterConfig()
	oc.NodeName, ncl.NodeName = "", "" // node_name, above
	diff("cluster", oc, ncl)
	return out
}

// RestartError is the reload refusal for the fields RestartRequired returned.
func RestartError(fields []string) error {
	if len(fields) == 0 {
		return nil
	}
	return fmt.Errorf("%s changed: this needs a restart (systemctl restart vipd)", strings.Join(fields, ", "))
}
