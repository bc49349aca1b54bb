package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"roomcast/internal/auth"
	"roomcast/internal/config"
	"roomcast/internal/signin"
	"roomcast/internal/store"
)

// Welcome writes what a person needs to start (issue 15): the pages' URLs,
// the RTMP server URL for OBS and, on the first start of a data dir (or
// shared database) only, a one-time sign-in link for the studio. Later
// starts point at `roomcast admin login` instead of printing a new link.
func (a *App) Welcome(ctx context.Context, w io.Writer) error {
	mark := "started " + time.Now().UTC().Format(time.RFC3339Nano) + " " + auth.RandomHex(4)
	got, err := a.Store.SettingOrCreate(ctx, "first_start", func() string { return mark })
	if err != nil {
		return err
	}
	first := got == mark
	base := BaseURL(a.Cfg, a.HTTPAddr())
	var b strings.Builder
	fmt.Fprintf(&b, "\nroomcast is running.\n\n")
	fmt.Fprintf(&b, "  Live rooms:  %s/\n", base)
	fmt.Fprintf(&b, "  Studio:      %s/studio\n", base)
	if lan := lanURL(a.Cfg, a.HTTPAddr()); lan != "" {
		fmt.Fprintf(&b, "  On your LAN: %s/\n", lan)
	}
	if ad := a.Media.RTMPAddr(); ad != nil {
		fmt.Fprintf(&b, "  OBS server:  %s   (Settings → Stream → Custom; the stream key is in the studio)\n", rtmpURL(a.Cfg, ad.String()))
	} else {
		fmt.Fprintf(&b, "  OBS server:  RTMP ingest is off (start with --rtmp :1935)\n")
	}
	if first {
		code, err := signin.Issue(ctx, a.Store, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\nSign in to the studio with this one-time link (valid %d minutes, works once):\n\n  %s/studio#code=%s\n", int(signin.CodeTTL/time.Minute), base, code)
	}
	fmt.Fprintf(&b, "\nA new sign-in link: roomcast admin login --data %s\n\n", a.Cfg.Data)
	_, err = io.WriteString(w, b.String())
	return err
}

// LoginLink issues a one-time studio sign-in link in st, for `roomcast
// admin login`; the base URL comes from --public-url or --http.
func LoginLink(ctx context.Context, st *store.Store, cfg *config.Config) (string, error) {
	code, err := signin.Issue(ctx, st, time.Now())
	if err != nil {
		return "", err
	}
	return BaseURL(cfg, cfg.HTTP) + "/studio#code=" + code, nil
}

// BaseURL is --public-url, or http://HOST:PORT for the listen address addr
// with a wildcard host shown as localhost.
func BaseURL(cfg *config.Config, addr string) string {
	if cfg.PublicURL != "" {
		return strings.TrimRight(cfg.PublicURL, "/")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// rtmpURL is the OBS server URL for the RTMP listen address.
func rtmpURL(cfg *config.Config, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if cfg.PublicURL != "" {
		if h := hostOf(cfg.PublicURL); h != "" {
			host = h
		}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "rtmp://" + net.JoinHostPort(host, port) + "/live"
}

func hostOf(u string) string {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		rest = u
	}
	rest, _, _ = strings.Cut(rest, "/")
	if h, _, err := net.SplitHostPort(rest); err == nil {
		return h
	}
	return rest
}

// lanURL is the pages' URL on the machine's first non-loopback IPv4
// address when HTTP listens on all interfaces, else "".
func lanURL(cfg *config.Config, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || cfg.PublicURL != "" {
		return ""
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return ""
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return "http://" + net.JoinHostPort(n.IP.String(), port)
		}
	}
	return ""
}

// coverDir keeps the covers of ended sessions: DATA/covers.
func coverDir(cfg *config.Config) string {
	if cfg.Data == "" {
		return ""
	}
	return filepath.Join(cfg.Data, "covers")
}
