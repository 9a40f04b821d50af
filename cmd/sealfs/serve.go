package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/remote/netbatch"
	"github.com/sealfs/sealfs/server"
	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/keyring"
	"github.com/sealfs/sealfs/server/meta"
	"github.com/sealfs/sealfs/server/tlscert"
)

func init() {
	commands["serve"] = command{"run the storage server (HTTPS)", runServe}
}

// The data directory's layout. Everything in it is either server-side
// ciphertext, hashes, or the TLS key; the keyring may live elsewhere.
const (
	metaFile    = "meta.db"
	blobDir     = "blobs"
	keyringFile = "keyring.json"
	tlsDir      = "tls"
	acmeDir     = "acme"
	secretFile  = "server.secret"
	// servingFile records which certificate serve presents, so that
	// 'sealfs server fingerprint' prints that one.
	servingFile = "serving-cert"
)

// stores are the server's open stores over one data directory.
type stores struct {
	meta    *meta.SQLite
	blobs   *blob.Local
	keyring *keyring.Keyring
	atrest  *atrest.Store
}

func (s *stores) Close() {
	s.meta.Close()
	s.blobs.Close()
}

// openStores opens (creating when create is set) the data directory.
// Admin commands open the same files as a running server: SQLite in WAL
// mode, the blob store and the keyring are all safe for that.
func openStores(dir, keyringPath string, create bool) (*stores, error) {
	if dir == "" {
		return nil, usagef("--data DIR is required")
	}
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(filepath.Join(dir, metaFile)); err != nil {
		return nil, fmt.Errorf("%s is not a sealfs data directory (no %s): start 'sealfs serve --data %s' once first", dir, metaFile, dir)
	}
	if keyringPath == "" {
		keyringPath = filepath.Join(dir, keyringFile)
	}
	kr, err := keyring.Open(keyringPath, create)
	if err != nil {
		return nil, err
	}
	m, err := meta.OpenSQLite(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	b, err := blob.OpenLocal(filepath.Join(dir, blobDir))
	if err != nil {
		m.Close()
		return nil, err
	}
	return &stores{meta: m, blobs: b, keyring: kr, atrest: atrest.New(b, kr)}, nil
}

// serverSecret loads or creates the secret that keys fake pre-login salts.
func serverSecret(dir string) ([]byte, error) {
	p := filepath.Join(dir, secretFile)
	b, err := os.ReadFile(p)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b = make([]byte, 32)
	rand.Read(b)
	return b, writeFileAtomic(p, b, 0o600, true)
}

// writeFileAtomic replaces a small file through a temporary file and a
// rename, so a reader or a crash sees the old content or the new, never a
// torn file. With durable set it also syncs the file and its directory,
// for files whose loss matters (configuration, secrets); a status file that
// is rewritten every second does without.
func writeFileAtomic(path string, data []byte, mode os.FileMode, durable bool) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if durable {
		if err = tmp.Sync(); err != nil {
			return err
		}
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// spaceReserve returns the server's test of free space on the data
// directory's disk: true while more than the reserve (flag, or by default
// 5% of the disk and at most 256 MiB) is free to unprivileged writers,
// beyond what the metadata's WAL may still take.
// Deleting files, metadata transactions and a restart need some room; a
// reserve of 0 turns the test off.
func spaceReserve(dir, flag string) (func() bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("free space of %s: %w", dir, err)
	}
	reserve := min(int64(st.Blocks)*st.Bsize/20, 256<<20)
	if flag != "" {
		v, err := parseSize(flag)
		if err != nil {
			return nil, usagef("--min-free: %v", err)
		}
		reserve = v
	}
	if reserve == 0 {
		return nil, nil
	}
	wal := filepath.Join(dir, metaFile+"-wal")
	return func() bool {
		var st unix.Statfs_t
		// A failed statfs must not stop uploads that would work.
		if unix.Statfs(dir, &st) != nil {
			return true
		}
		// What the WAL holds is written again into the database by the
		// next checkpoint, which no upload waits for: the file's size
		// bounds that, and counts as taken. (Without it, small files,
		// which go into the database, still filled a small disk to its
		// last byte after uploads stopped at the reserve.)
		var walSize int64
		if fi, err := os.Stat(wal); err == nil {
			walSize = fi.Size()
		}
		return int64(st.Bavail)*st.Bsize-walSize > reserve
	}, nil
}

func runServe(args []string) error {
	fl := newFlags("serve", "--data DIR [--keyring F] [--listen HOST:PORT] [--hostname NAME]... [--tls-cert F --tls-key F | --acme-domain NAME] [--metrics-listen HOST:PORT]")
	data := fl.String("data", "", "data directory (created if missing)")
	keyringPath := fl.String("keyring", "", "key-encryption keyring file (default DIR/keyring.json)")
	listen := fl.String("listen", "127.0.0.1:8443", "address to serve HTTPS on; ':8443' exposes the server")
	hostnames := fl.StringArray("hostname", nil, "extra name or IP for the self-signed certificate (repeatable)")
	certFile := fl.String("tls-cert", "", "TLS certificate file (PEM), reloaded on SIGHUP")
	keyFile := fl.String("tls-key", "", "TLS private key file (PEM)")
	acmeDomain := fl.String("acme-domain", "", "get a certificate for this domain with ACME (Let's Encrypt)")
	metricsListen := fl.String("metrics-listen", "", "address to serve Prometheus metrics on (plain HTTP; keep it private)")
	verbose := fl.BoolP("verbose", "v", false, "log every request")
	gcGrace := fl.Duration("gc-grace", 24*time.Hour, "how long a chunk must have been unreferenced before it is collected")
	minFree := fl.String("min-free", "", "free space on the data directory's disk kept for metadata: uploads fail below it (default 5% of the disk, at most 256MiB; 0: none)")
	gcInterval := fl.Duration("gc-interval", 5*time.Minute, "how often garbage is collected")
	fl.MarkHidden("gc-interval")
	cpuprofile := addProfileFlag(fl)
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 0 {
		return usagef("unexpected arguments: %v", fl.Args())
	}
	if (*certFile == "") != (*keyFile == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if *certFile != "" && *acmeDomain != "" {
		return usagef("use either --tls-cert/--tls-key or --acme-domain")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	stopProfile, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()

	st, err := openStores(*data, *keyringPath, true)
	if err != nil {
		return err
	}
	defer st.Close()
	spaceLeft, err := spaceReserve(*data, *minFree)
	if err != nil {
		return err
	}
	secret, err := serverSecret(*data)
	if err != nil {
		return err
	}

	tlsConf, reload, fingerprint, err := serverTLS(log, *data, *listen, *hostnames, *certFile, *keyFile, *acmeDomain)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := server.New(st.meta, st.atrest, server.Config{Secret: secret, Logger: log, Metrics: server.NewMetrics(reg, st.meta), GCGrace: *gcGrace, GCInterval: *gcInterval,
		SessionStamp: filepath.Join(*data, server.SessionStampName), SpaceLeft: spaceLeft})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", *listen, err)
	}
	hs := &http.Server{
		Handler:           srv,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Flow-control windows wide enough for a client's parallel 1 MiB
		// chunk uploads on one connection, so the window, not the link,
		// never sets the pace.
		HTTP2:    &http.HTTP2Config{MaxReceiveBufferPerConnection: 32 << 20, MaxReceiveBufferPerStream: 4 << 20},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// With netbatch.Listener below, handlers can send a chunk's
		// records in a few socket writes.
		ConnContext: netbatch.ConnContext,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Run(ctx)

	if *metricsListen != "" {
		mln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return fmt.Errorf("cannot listen on %s for metrics: %w", *metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go ms.Serve(mln)
		defer ms.Close()
		log.Info("metrics", "listen", mln.Addr().String())
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(netbatch.Listener(ln), "", "") }()
	log.Info("sealfs serving", "listen", ln.Addr().String(), "data", *data, "fingerprint", fingerprint)
	for {
		select {
		case err := <-errc:
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if reload == nil {
					log.Info("SIGHUP: nothing to reload")
				} else if err := reload(); err != nil {
					log.Error("SIGHUP: reloading the certificate failed; keeping the old one", "err", err)
				} else {
					log.Info("SIGHUP: certificate reloaded")
				}
				continue
			}
			log.Info("shutting down: finishing requests in flight", "signal", sig.String())
			sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
			err := hs.Shutdown(sctx)
			scancel()
			cancel()
			if err != nil {
				log.Warn("shutdown", "err", err)
			}
			return nil
		}
	}
}

// serverTLS picks the certificate source: ACME, given files, or a
// self-signed certificate kept in the data directory.
func serverTLS(log *slog.Logger, data, listen string, hostnames []string, certFile, keyFile, acmeDomain string) (*tls.Config, func() error, string, error) {
	if acmeDomain != "" {
		conf, challenges, err := tlscert.ACMEConfig(acmeDomain, filepath.Join(data, acmeDir))
		if err != nil {
			return nil, nil, "", err
		}
		os.Remove(filepath.Join(data, servingFile))
		// HTTP-01 challenges need port 80; TLS-ALPN-01 works on the TLS
		// port alone, so a busy or forbidden port 80 is only a warning.
		go func() {
			hs := &http.Server{Addr: ":80", Handler: challenges, ReadHeaderTimeout: 10 * time.Second}
			if err := hs.ListenAndServe(); err != nil {
				log.Warn("ACME HTTP-01 listener on :80 unavailable; relying on TLS-ALPN-01", "err", err)
			}
		}()
		return conf, nil, "(ACME certificate for " + acmeDomain + ")", nil
	}
	if certFile == "" {
		hosts := append([]string{}, hostnames...)
		if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
			hosts = append(hosts, h)
		}
		var generated bool
		var err error
		certFile, keyFile, generated, err = tlscert.EnsureSelfSigned(filepath.Join(data, tlsDir), hosts)
		if err != nil {
			return nil, nil, "", err
		}
		if generated {
			log.Info("created a new self-signed certificate: clients must pin its fingerprint", "cert", certFile)
		}
	}
	abs, err := filepath.Abs(certFile)
	if err != nil {
		return nil, nil, "", err
	}
	// Written only when it changes: a restart on a full disk (the first
	// thing an operator tries) must not fail for want of room to rewrite
	// what is already there.
	record, recordPath := []byte(abs+"\n"), filepath.Join(data, servingFile)
	if old, err := os.ReadFile(recordPath); err != nil || !bytes.Equal(old, record) {
		if err := writeFileAtomic(recordPath, record, 0o600, true); err != nil {
			return nil, nil, "", err
		}
	}
	r, err := tlscert.NewReloader(certFile, keyFile)
	if err != nil {
		return nil, nil, "", err
	}
	return tlscert.ServerConfig(r.GetCertificate), r.Reload, r.Fingerprint(), nil
}
