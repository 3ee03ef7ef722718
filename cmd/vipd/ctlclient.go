package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vipd-project/vipd/pkg/cli"
	"github.com/vipd-project/vipd/pkg/config"
)

// ctlFlags are the flags of the commands that talk to the control socket.
type ctlFlags struct {
	socket, cfgPath string
	timeout         time.Duration
}

func (f *ctlFlags) add(c *cobra.Command) {
	c.PersistentFlags().StringVar(&f.socket, "socket", "", "control socket of the daemon (default: control_socket from the config)")
	c.PersistentFlags().StringVarP(&f.cfgPath, "config", "c", config.DefaultPath, "configuration file (to find the control socket)")
	c.PersistentFlags().DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the daemon's answer")
}

// socketPath is --socket, else control_socket of the config, else the default.
func (f *ctlFlags) socketPath() string {
	if f.socket != "" {
		return f.socket
	}
	if cfg, err := config.Load(f.cfgPath); err == nil {
		return cfg.ControlSocket
	}
	return config.DefaultControlSocket
}

// ctlDo sends one request to the control socket and returns the body of a 200 answer; any
// other answer is an error carrying the daemon's message.
func ctlDo(ctx context.Context, socket, method, path string, form url.Values) ([]byte, error) {
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vipd"+path, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("vipd is not answering on %s: %w (is it running? systemctl status vipd)", socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", socket, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return b, nil
	case resp.StatusCode == http.StatusNotFound && strings.HasPrefix(string(b), "404 page not found"):
		return nil, fmt.Errorf("the running vipd does not know %s %s (an older version? restart it after an upgrade)", method, path)
	default:
		return nil, fmt.Errorf("%s", strings.TrimSpace(string(b)))
	}
}

// ctlChange posts a change and prints the daemon's message; it returns the result.
func ctlChange(cmd *cobra.Command, f *ctlFlags, path string, form url.Values) (ctlResult, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	b, err := ctlDo(ctx, f.socketPath(), http.MethodPost, path, form)
	if err != nil {
		return ctlResult{}, &exitError{code: 1, err: err}
	}
	var res ctlResult
	if err := json.Unmarshal(b, &res); err != nil {
		return res, &exitError{code: 1, err: fmt.Errorf("decode the daemon's answer: %w", err)}
	}
	fmt.Fprintln(cmd.OutOrStdout(), res.Message)
	return res, nil
}

// needSub is the RunE of a command group: a missing operation is a usage error.
func needSub(cmd *cobra.Command, _ []string) error {
	return &cli.UsageError{Err: fmt.Errorf("%s needs an operation (see %s --help)", cmd.CommandPath(), cmd.CommandPath())}
}
