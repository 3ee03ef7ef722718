package importer

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// vrrpSection writes node_name and the vrrp section from the first vrrp_instance.
func vrrpSection(d *doc, file string, ka *block) (tracking, error) {
	var tr tracking
	insts := ka.all("vrrp_instance")
	if len(insts) == 0 {
		return tr, fmt.Errorf("%s: no vrrp_instance block: nothing to translate", file)
	}
	in := insts[0]
	at := func(b *block) string { return fmt.Sprintf("%s:%d", file, b.line) }
	version := "2"
	if g := ka.first("global_defs"); g != nil {
		if v := g.arg("vrrp_version"); v != "" {
			version = v
		}
		if r := g.arg("router_id"); r != "" {
			d.comment(0, "global_defs router_id %s (%s): vipd names the node node_name (default: the host name).", r, at(g))
		}
		for _, c := range g.children {
			switch c.name {
			case "vrrp_version", "router_id":
			default:
				d.comment(0, "not carried over: global_defs %s (%s).", strings.Join(append([]string{c.name}, c.args...), " "), at(c))
			}
		}
	}
	for _, other := range insts[1:] {
		d.comment(0, "not carried over: vrrp_instance %s (%s): vipd runs one VRRP instance per host; translate it into a second vipd.yaml.",
			strings.Join(other.args, " "), at(other))
	}
	for _, g := range ka.all("vrrp_sync_group") {
		d.comment(0, "not carried over: vrrp_sync_group %s (%s): one instance needs no sync group.", strings.Join(g.args, " "), at(g))
	}
	for _, v := range ka.all("virtual_server") {
		d.comment(0, "not carried over: virtual_server %s (%s): LVS; vipd's proxy section does the load balancing.", strings.Join(v.args, " "), at(v))
	}
	d.kv(0, "vrrp", "")
	scripts := map[string]*block{}
	for _, s := range ka.all("vrrp_script") {
		if len(s.args) > 0 {
			scripts[s.args[0]] = s
		}
	}
	var vips, peers []string
	var garpCount, garpRefresh string
	for _, c := range in.children {
		val := ""
		if len(c.args) > 0 {
			val = c.args[0]
		}
		switch c.name {
		case "state":
			d.comment(1, "state %s (%s): vipd starts as BACKUP and the priority decides who is MASTER.", val, at(c))
		case "interface":
			d.kv(1, "interface", q(val))
		case "virtual_router_id":
			d.kv(1, "vrid", q(val))
		case "priority":
			d.kv(1, "priority", q(val))
		case "advert_int":
			s, err := seconds(val)
			if err != nil {
				return tr, fmt.Errorf("%s: advert_int: %w", at(c), err)
			}
			d.kv(1, "advert_interval", s)
		case "nopreempt":
			d.kv(1, "preempt", "false")
		case "preempt_delay":
			s, err := seconds(val)
			if err != nil {
				return tr, fmt.Errorf("%s: preempt_delay: %w", at(c), err)
			}
			d.kv(1, "preempt_delay", s)
		case "authentication":
			typ, pass := c.arg("auth_type"), c.first("auth_pass")
			if typ != "PASS" {
				d.comment(1, "not carried over: authentication auth_type %s (%s): vipd speaks auth_type PASS (VRRPv2) or none.", typ, at(c))
				break
			}
			if pass != nil {
				d.comment(1, "auth_pass (%s): vipd reads the password from a file, not copied here: write it to the\nfile below (mode 0640, owner root, group vipd).", at(pass))
				d.kv(1, "auth_pass_file", "/etc/vipd/vrrp-pass")
			}
		case "virtual_ipaddress":
			for _, a := range c.children {
				addr := a.name
				if !strings.Contains(addr, "/") {
					ip, err := netip.ParseAddr(addr)
					if err != nil {
						return tr, fmt.Errorf("%s: virtual_ipaddress %q: %w", at(a), addr, err)
					}
					addr = netip.PrefixFrom(ip, ip.BitLen()).String()
					d.comment(1, "%s (%s) had no prefix length: Keepalived's default /%d kept; the subnet's (e.g. /24) is usual.", a.name, at(a), ip.BitLen())
				}
				if dev := option(a.args, "dev"); dev != "" && dev != in.arg("interface") {
					d.comment(1, "%s dev %s (%s): vipd puts every VIP on vrrp.interface.", a.name, dev, at(a))
				}
				vips = append(vips, addr)
			}
		case "virtual_ipaddress_excluded", "virtual_routes", "virtual_rules":
			d.comment(1, "not carried over: %s (%s): vipd manages the VIPs of vrrp.vips only.", c.name, at(c))
		case "unicast_src_ip":
			d.kv(1, "unicast_source", q(val))
		case "unicast_peer":
			for _, p := range c.children {
				peers = append(peers, p.name)
			}
		case "track_interface":
			d.kv(1, "track_interface", "true")
			for _, i := range c.children {
				if i.name != in.arg("interface") {
					d.comment(1, "track_interface %s (%s): vipd tracks vrrp.interface only.", i.name, at(i))
				}
			}
		case "track_script":
			var desc []string
			for _, s := range c.children {
				sc := scripts[s.name]
				if sc == nil {
					d.comment(1, "track_script %s (%s): no vrrp_script of that name.", s.name, at(s))
					continue
				}
				w := 0
				if ws := sc.arg("weight"); ws != "" {
					n, err := strconv.Atoi(ws)
					if err != nil {
						return tr, fmt.Errorf("%s: vrrp_script %s weight %q: %w", at(sc), s.name, ws, err)
					}
					w = n
				}
				if wo := option(s.args, "weight"); wo != "" {
					if n, err := strconv.Atoi(wo); err == nil {
						w = n
					}
				}
				if w > 0 {
					desc = append(desc, fmt.Sprintf("vrrp_script %s (%s) had weight %d: vipd only lowers the priority; tracking\nlowers it by proxy.track_weight instead.", s.name, at(sc), w))
					w = 0
				}
				red := -w
				if tr.weight == nil || red > *tr.weight {
					tr.weight = &red
				}
				desc = append(desc, fmt.Sprintf("vrrp_script %s (%s: %q every %ss) becomes vipd's built-in tracking: the\nproxy's own health checks lower the priority by proxy.track_weight (%d; 0 = give up the VIP)\nwhen fewer than min_healthy_backends backends are UP or the listener failed; nothing runs curl.",
					s.name, at(sc), sc.arg("script"), orDefault(sc.arg("interval"), "1"), red))
			}
			tr.scripts = strings.Join(desc, "\n")
		case "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop":
			d.comment(1, "not carried over: %s %q (%s): vipd logs every state change and exports vipd_vrrp_state;\nalert on that (deploy/prometheus-alerts.yaml).", c.name, val, at(c))
		case "garp_master_repeat":
			garpCount = q(val)
		case "garp_master_refresh":
			s, err := seconds(val)
			if err != nil {
				return tr, fmt.Errorf("%s: garp_master_refresh: %w", at(c), err)
			}
			garpRefresh = s
		case "use_vmac":
			d.comment(1, "use_vmac (%s): vipd announces the VIP with the interface's MAC; peers that send from a virtual\nMAC need the source MAC check off.", at(c))
			d.kv(1, "source_mac_check", "false")
		default:
			d.comment(1, "not carried over: %s (%s).", strings.Join(append([]string{c.name}, c.args...), " "), at(c))
		}
	}
	if version == "2" {
		d.comment(1, "Keepalived speaks VRRPv2 unless global_defs says vrrp_version 3: kept, so both can run side by side.")
	}
	if garpCount != "" || garpRefresh != "" {
		d.kv(1, "garp", "")
		if garpCount != "" {
			d.kv(2, "count", garpCount)
		}
		if garpRefresh != "" {
			d.kv(2, "refresh", garpRefresh)
		}
	}
	d.kv(1, "version", q(version))
	d.list(1, "vips", vips)
	if len(peers) > 0 {
		d.list(1, "unicast_peers", peers)
	}
	return tr, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
