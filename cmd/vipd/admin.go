package main

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vipd-project/vipd/pkg/tcpproxy"
)

// handleBackend applies `vipd backend drain|disable|enable|weight` (form values backend,
// grace, weight) and saves the result to state_file.
func (d *daemon) handleBackend(r *http.Request, who peer) (ctlResult, error) {
	if d.proxy == nil {
		return ctlResult{}, &ctlError{http.StatusConflict, "this vipd has no proxy section: no backends to change"}
	}
	addr, err := resolveBackend(r.FormValue("backend"), d.proxy.Config().Backends)
	if err != nil {
		return ctlResult{}, &ctlError{http.StatusBadRequest, err.Error()}
	}
	res := ctlResult{Backend: addr}
	log := d.log.With(append([]any{"component", "control", "backend", addr}, who.logAttrs()...)...)
	switch verb := r.PathValue("verb"); verb {
	case "drain":
		grace := d.proxy.Config().DrainGrace // proxy.drain_grace unless --grace
		if s := r.FormValue("grace"); s != "" {
			if grace, err = time.ParseDuration(s); err != nil || grace < 0 {
				return res, &ctlError{http.StatusBadRequest, fmt.Sprintf("grace %q: want a duration such as 30s", s)}
			}
		}
		n, err := d.proxy.SetAdmin(addr, tcpproxy.AdminDrain, grace)
		if err != nil {
			return res, err
		}
		if grace > 0 {
			res.DrainEnds = time.Now().Add(grace)
		}
		res.Message = fmt.Sprintf("%s draining: no new connections; open ones closed after %s", addr, grace)
		if n > 0 {
			res.Message = fmt.Sprintf("%s drained: %d open connections closed (grace 0)", addr, n)
		}
		log.Info("backend drained on request", "grace", grace, "closed", n)
	case "disable":
		n, err := d.proxy.SetAdmin(addr, tcpproxy.AdminMaint, 0)
		if err != nil {
			return res, err
		}
		res.Message = fmt.Sprintf("%s disabled (MAINT): no new connections, %d open connections closed", addr, n)
		log.Info("backend disabled on request", "closed", n)
	case "enable":
		if _, err := d.proxy.SetAdmin(addr, tcpproxy.AdminReady, 0); err != nil {
			return res, err
		}
		res.Message = fmt.Sprintf("%s enabled: takes new connections while its health checks pass", addr)
		log.Info("backend enabled on request")
	case "weight":
		w, err := strconv.Atoi(r.FormValue("weight"))
		if err != nil {
			return res, &ctlError{http.StatusBadRequest, fmt.Sprintf("weight %q: want an integer 0-%d", r.FormValue("weight"), tcpproxy.MaxWeight)}
		}
		if err := d.proxy.SetWeight(addr, w); err != nil {
			return res, &ctlError{http.StatusBadRequest, err.Error()}
		}
		res.Message = fmt.Sprintf("%s weight %d", addr, w)
		log.Info("backend weight set on request", "weight", w)
	default:
		return res, &ctlError{http.StatusNotFound, fmt.Sprintf("unknown backend operation %q (drain, disable, enable, weight)", verb)}
	}
	return d.saved(res)
}

// resolveBackend finds name among the configured backends: exactly as written in vipd.yaml
// ("192.168.10.138:6443"), or its host part when only one backend has that host.
func resolveBackend(name string, backends []string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("no backend given (backends: %s)", strings.Join(backends, ", "))
	}
	var byHost []string
	for _, b := range backends {
		if b == name {
			return b, nil
		}
		if h, _, err := net.SplitHostPort(b); err == nil && h == strings.Trim(name, "[]") {
			byHost = append(byHost, b)
		}
	}
	switch len(byHost) {
	case 1:
		return byHost[0], nil
	case 0:
		return "", fmt.Errorf("backend %q is not configured (backends: %s)", name, strings.Join(backends, ", "))
	default:
		return "", fmt.Errorf("backend %q matches %d backends (%s): give host:port", name, len(byHost), strings.Join(byHost, ", "))
	}
}
