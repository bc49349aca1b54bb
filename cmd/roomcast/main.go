// Command roomcast is the live-streaming and live-room server.
//
//	roomcast serve [flags]      run a node
//	roomcast token [flags]      print a signed user token
//	roomcast admin login [flags] print a one-time studio sign-in link
//	roomcast doctor [serve flags] check the set-up and say what is wrong
//	roomcast bench SUB [flags]  load generator (ws, poll, send, flv)
//	roomcast version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"roomcast/internal/app"
	"roomcast/internal/auth"
	"roomcast/internal/bench"
	"roomcast/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `roomcast — live streaming with the live room built in

usage:
  roomcast serve [flags]          run a node (roomcast serve -h for flags)
  roomcast token [flags]          print a signed user token
  roomcast admin login [flags]    print a one-time studio sign-in link
  roomcast doctor [serve flags]   check the set-up (ports, data dir, Redis, SQL, ffmpeg, clocks)
  roomcast health [--url URL]     exit 0 when a node answers /readyz (container health check)
  roomcast bench ws|poll|send|flv [flags]   load generator
  roomcast version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "admin":
		err = admin(args[1:], stdout, stderr)
	case "doctor":
		err = doctor(args[1:], stdout, stderr)
	case "health":
		err = health(args[1:], stdout, stderr)
	case "token":
		err = token(args[1:], stdout, stderr)
	case "bench":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = bench.Run(ctx, args[1:], stdout, stderr)
	case "version", "-v", "--version":
		fmt.Fprintln(stdout, "roomcast", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "roomcast: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "roomcast:", err)
		return 1
	}
	return 0
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stdout, stderr io.Writer) error {
	cfg, err := config.Load("roomcast serve", args, os.LookupEnv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		a.Shutdown(context.Background())
		return err
	}
	log.Info("ready", "data", cfg.Data)
	if err := a.Welcome(ctx, stdout); err != nil {
		log.Warn("welcome", "err", err)
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	return a.Shutdown(sctx)
}

func token(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roomcast token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory whose secret signs the token")
	db := fs.String("db", "", "shared SQL store (postgres://, mysql://) whose secret signs the token, instead of --data")
	secret := fs.String("secret", "", "signing secret (overrides the stored one)")
	sub := fs.String("sub", "", "user id (required)")
	name := fs.String("name", "", "display name (default: the user id)")
	level := fs.Int("level", 0, "user level 0–100")
	role := fs.String("role", auth.RoleViewer, "viewer, anchor or admin")
	ttl := fs.Duration("ttl", time.Hour, "validity")
	showAdmin := fs.Bool("admin-key", false, "print the data dir's admin key instead of a token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Data, cfg.DB, cfg.Secret = *data, *db, *secret
	st, err := app.OpenStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	sec, adminKey, err := app.Secrets(context.Background(), st, cfg)
	if err != nil {
		return err
	}
	if *showAdmin {
		fmt.Fprintln(stdout, adminKey)
		return nil
	}
	if *sub == "" {
		return errors.New("token: --sub is required")
	}
	signer, err := auth.NewSigner(sec)
	if err != nil {
		return err
	}
	tok, err := signer.Sign(auth.Claims{Sub: *sub, Name: *name, Level: *level, Role: *role}, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
