// Package rabbittest starts a REAL RabbitMQ broker (Debian's or Fedora's
// rabbitmq-server package) for skyline's tests, set up the way Fedora's
// public fedora-messaging broker is (fedora-messaging docs, "Fedora's
// public broker"): AMQP 0-9-1 over TLS only, client certificates, SASL
// EXTERNAL with the user taken from the certificate's common name, the
// vhost /public_pubsub, and a read-only identity that may only configure
// and read its own server-named amq.gen-* queues and read amq.topic.
//
// The broker runs as a plain child process on loopback, on free ports,
// with its own RABBITMQ_MNESIA_BASE, RABBITMQ_LOG_BASE, config file and
// Erlang port mapper (epmd) in a directory of the caller's: nothing of
// the system's RabbitMQ is used or touched. Erlang starts slowly (several
// seconds), so a test binary starts one broker in TestMain and shares it.
package rabbittest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Identities the broker knows, by certificate common name.
const (
	// ListenerUser is the read-only identity, as Fedora's public broker
	// grants to everyone: configure and write only on amq.gen-* queues,
	// read on those and on amq.topic.
	ListenerUser = "skyline-listener"
	// PublisherUser may publish to amq.topic (the test plays Koji's
	// fedora-messaging plugin with it).
	PublisherUser = "skyline-publisher"
	// StrangerUser has a valid certificate of the CA but no account:
	// the broker must refuse it.
	StrangerUser = "skyline-stranger"
)

// Vhost is the virtual host of Fedora's public broker.
const Vhost = "/public_pubsub"

// serverScripts are where Debian and Fedora install the real server script
// (the /usr/sbin wrapper insists on running as the rabbitmq user).
var serverScripts = []string{"/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server"}

// ErrNotInstalled: rabbitmq-server is not installed (make deps installs it).
var ErrNotInstalled = errors.New("rabbittest: rabbitmq-server is not installed (run make deps)")

// Broker is a running RabbitMQ.
type Broker struct {
	// URL is the amqps URL of the TLS listener with the vhost.
	URL string
	// Dir holds the broker's config, certificates, data and logs.
	Dir string

	host     string
	port     int
	ca       *x509.CertPool
	certs    map[string]tls.Certificate
	server   *exec.Cmd
	epmd     *exec.Cmd
	watch    *exec.Cmd // kills the broker when this process dies
	lifeline *os.File  // the watchdog's stdin: closed when this process dies
	exited   chan struct{}
	exitErr  error
	env      []string
}

// Start starts a broker in dir (which must exist and be empty or hold
// nothing of value) and waits until it accepts an AMQP connection, at most
// timeout. The broker's output goes to logw. Stop it with Stop.
func Start(dir string, logw io.Writer, timeout time.Duration) (*Broker, error) {
	script := ""
	for _, s := range serverScripts {
		if _, err := os.Stat(s); err == nil {
			script = s
			break
		}
	}
	if script == "" {
		return nil, ErrNotInstalled
	}
	epmdBin, err := findEPMD()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	b := &Broker{Dir: dir, host: "127.0.0.1", port: ports[0], certs: map[string]tls.Certificate{}, exited: make(chan struct{})}
	b.URL = fmt.Sprintf("amqps://%s:%d/%s", b.host, b.port, url.PathEscape(Vhost))
	if err := b.writePKI(); err != nil {
		return nil, err
	}
	if err := b.writeConfig(); err != nil {
		return nil, err
	}
	node := fmt.Sprintf("skyline-test-%d@localhost", ports[0])
	b.env = append(os.Environ(),
		"HOME="+dir, // the Erlang cookie goes here
		"RABBITMQ_NODENAME="+node,
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbitmq.pid"),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[1]),
		"ERL_EPMD_PORT="+strconv.Itoa(ports[2]),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		// Never start an epmd daemon of Erlang's own: ours stops with us.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-start_epmd false",
	)
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("rabbittest: %w", err)
		}
	}
	// Our own epmd, in the foreground, so that it stops with the broker
	// and does not collide with another one.
	b.epmd = exec.Command(epmdBin, "-port", strconv.Itoa(ports[2]), "-address", "127.0.0.1")
	b.epmd.Env = b.env
	b.epmd.Stdout, b.epmd.Stderr = logw, logw
	b.epmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.epmd.Start(); err != nil {
		return nil, fmt.Errorf("rabbittest: start epmd: %w", err)
	}
	b.server = exec.Command(script)
	b.server.Dir = dir
	b.server.Env = b.env
	b.server.Stdout, b.server.Stderr = logw, logw
	b.server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.server.Start(); err != nil {
		b.kill(b.epmd)
		return nil, fmt.Errorf("rabbittest: start %s: %w", script, err)
	}
	go func() {
		b.exitErr = b.server.Wait()
		close(b.exited)
	}()
	if err := b.startWatchdog(); err != nil {
		b.Stop()
		return nil, err
	}
	if err := b.waitReady(timeout); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// startWatchdog starts a shell that blocks reading a pipe only this
// process holds open. However this process ends (a test timeout, a
// kill), the pipe closes and the shell kills the broker's process group
// and epmd. The parent-death signal alone is not enough: the server script
// runs Erlang in the background, so Erlang is a grandchild.
func (b *Broker) startWatchdog() error {
	// kill(1), not the shell's builtin: dash's cannot signal a process group.
	kill, err := exec.LookPath("kill")
	if err != nil {
		return fmt.Errorf("rabbittest: no kill(1): %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("rabbittest: %w", err)
	}
	b.watch = exec.Command("sh", "-c", `read _; "$1" -s KILL -- "-$2" "-$3" 2>/dev/null; exit 0`, "rabbittest-watchdog",
		kill, strconv.Itoa(b.server.Process.Pid), strconv.Itoa(b.epmd.Process.Pid))
	b.watch.Stdin = r
	b.watch.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = b.watch.Start()
	r.Close()
	if err != nil {
		w.Close()
		return fmt.Errorf("rabbittest: start watchdog: %w", err)
	}
	b.lifeline = w
	return nil
}

func findEPMD() (string, error) {
	if p, err := exec.LookPath("epmd"); err == nil {
		return p, nil
	}
	m, _ := filepath.Glob("/usr/lib/erlang/erts-*/bin/epmd")
	m2, _ := filepath.Glob("/usr/lib64/erlang/erts-*/bin/epmd")
	m = append(m, m2...)
	if len(m) == 0 {
		return "", fmt.Errorf("rabbittest: no epmd (Erlang) found: %w", ErrNotInstalled)
	}
	return m[len(m)-1], nil
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("rabbittest: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (b *Broker) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			return fmt.Errorf("rabbittest: rabbitmq-server exited during startup: %v (logs in %s)", b.exitErr, filepath.Join(b.Dir, "log"))
		default:
		}
		c, err := b.Dial(PublisherUser)
		if err == nil {
			c.Close()
			return nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("rabbittest: broker not ready after %v: %v (logs in %s)", timeout, last, filepath.Join(b.Dir, "log"))
}

// Stop stops the broker and its epmd and waits for them.
func (b *Broker) Stop() {
	if b.server != nil && b.server.Process != nil {
		syscall.Kill(-b.server.Process.Pid, syscall.SIGTERM)
		select {
		case <-b.exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-b.server.Process.Pid, syscall.SIGKILL)
			<-b.exited
		}
	}
	b.kill(b.epmd)
	if b.lifeline != nil {
		b.lifeline.Close()
		b.watch.Wait()
	}
}

func (b *Broker) kill(c *exec.Cmd) {
	if c == nil || c.Process == nil {
		return
	}
	syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	c.Wait()
}

// Addr is the broker's TLS listener, host:port.
func (b *Broker) Addr() string { return net.JoinHostPort(b.host, strconv.Itoa(b.port)) }

// TLSConfig returns the client TLS configuration of identity (ListenerUser,
// PublisherUser or StrangerUser): its client certificate and the test CA.
func (b *Broker) TLSConfig(identity string) *tls.Config {
	cert, ok := b.certs[identity]
	if !ok {
		panic("rabbittest: unknown identity " + identity)
	}
	return &tls.Config{RootCAs: b.ca, Certificates: []tls.Certificate{cert}, ServerName: b.host, MinVersion: tls.VersionTLS12}
}

// CAFile, CertFile and KeyFile are the PEM files of the CA and of
// identity's client certificate, for code that takes file names.
func (b *Broker) CAFile() string { return filepath.Join(b.Dir, "ca.pem") }

// CertFile is identity's client certificate (PEM).
func (b *Broker) CertFile(identity string) string { return filepath.Join(b.Dir, identity+".pem") }

// KeyFile is identity's client key (PEM).
func (b *Broker) KeyFile(identity string) string { return filepath.Join(b.Dir, identity+".key") }

// Dial connects as identity with SASL EXTERNAL over TLS.
func (b *Broker) Dial(identity string) (*amqp.Connection, error) {
	return amqp.DialConfig(b.URL, amqp.Config{
		SASL:            []amqp.Authentication{&amqp.ExternalAuth{}},
		TLSClientConfig: b.TLSConfig(identity),
		Vhost:           Vhost,
		Heartbeat:       5 * time.Second,
		Dial:            amqp.DefaultDial(5 * time.Second),
	})
}

// Publish publishes body on amq.topic with routing key topic, as
// PublisherUser, with fedora-messaging's properties and headers (its
// fedora_messaging_schema header among them when schema is not empty).
func (b *Broker) Publish(ctx context.Context, topic, schema, messageID string, body []byte) error {
	return b.PublishAs(ctx, PublisherUser, topic, schema, messageID, body)
}

// PublishAs is Publish as another identity; it waits for the broker's
// answer (publisher confirms), so a refused publish is an error.
func (b *Broker) PublishAs(ctx context.Context, identity, topic, schema, messageID string, body []byte) error {
	c, err := b.Dial(identity)
	if err != nil {
		return err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	headers := amqp.Table{"fedora_messaging_severity": int32(20), "sent-at": time.Now().UTC().Format(time.RFC3339)}
	if schema != "" {
		headers["fedora_messaging_schema"] = schema
	}
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "amq.topic", topic, false, false, amqp.Publishing{
		ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent,
		MessageId: messageID, Headers: headers, Body: body,
	})
	if err != nil {
		return err
	}
	select {
	case e := <-closed:
		if e == nil {
			return amqp.ErrClosed
		}
		return e
	case <-conf.Done():
		// A channel error (access refused) also ends the wait; look again.
		select {
		case e := <-closed:
			if e != nil {
				return e
			}
		case <-time.After(100 * time.Millisecond):
		}
		if !conf.Acked() {
			return errors.New("rabbittest: publish not confirmed")
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CloseConnections closes every client connection of the broker, as a
// broker restart or a network failure would (rabbitmqctl
// close_all_connections).
func (b *Broker) CloseConnections(reason string) error {
	ctl := filepath.Join(filepath.Dir(b.server.Path), "rabbitmqctl")
	if _, err := os.Stat(ctl); err != nil {
		ctl = "rabbitmqctl"
	}
	cmd := exec.Command(ctl, "close_all_connections", "--global", reason)
	cmd.Env = b.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbittest: rabbitmqctl close_all_connections: %v: %s", err, out)
	}
	return nil
}

func (b *Broker) writeConfig() error {
	q := func(s string) string { return strings.ReplaceAll(s, `\`, `\\`) }
	conf := strings.Join([]string{
		"listeners.tcp = none",
		fmt.Sprintf("listeners.ssl.default = %s:%d", b.host, b.port),
		"ssl_options.cacertfile = " + q(filepath.Join(b.Dir, "ca.pem")),
		"ssl_options.certfile = " + q(filepath.Join(b.Dir, "server.pem")),
		"ssl_options.keyfile = " + q(filepath.Join(b.Dir, "server.key")),
		"ssl_options.verify = verify_peer",
		"ssl_options.fail_if_no_peer_cert = true",
		// Fedora's public broker: the user is the certificate's CN, SASL EXTERNAL only.
		"auth_mechanisms.1 = EXTERNAL",
		"ssl_cert_login_from = common_name",
		"loopback_users = none",
		"load_definitions = " + q(filepath.Join(b.Dir, "definitions.json")),
		"log.console = true",
		"log.console.level = warning",
		"log.file.level = info",
		"heartbeat = 5",
		"",
	}, "\n")
	type user struct {
		Name         string `json:"name"`
		PasswordHash string `json:"password_hash"`
		Hashing      string `json:"hashing_algorithm"`
		Tags         string `json:"tags"`
	}
	type perm struct {
		User      string `json:"user"`
		Vhost     string `json:"vhost"`
		Configure string `json:"configure"`
		Write     string `json:"write"`
		Read      string `json:"read"`
	}
	defs := map[string]any{
		"users": []user{
			{ListenerUser, "", "rabbit_password_hashing_sha256", ""},
			{PublisherUser, "", "rabbit_password_hashing_sha256", ""},
		},
		"vhosts": []map[string]string{{"name": Vhost}},
		"permissions": []perm{
			// Like Fedora's public broker: a consumer may make and read its
			// own server-named queues and bind them to amq.topic, nothing else.
			{ListenerUser, Vhost, `^amq\.gen-.*`, `^amq\.gen-.*`, `^(amq\.gen-.*|amq\.topic)$`},
			{PublisherUser, Vhost, `^amq\.gen-.*`, `^(amq\.gen-.*|amq\.topic)$`, `^amq\.gen-.*`},
		},
	}
	dj, err := json.MarshalIndent(defs, "", "  ")
	if err != nil {
		return fmt.Errorf("rabbittest: %w", err)
	}
	files := map[string]string{
		"rabbitmq.conf":     conf,
		"definitions.json":  string(dj),
		"enabled_plugins":   "[rabbitmq_auth_mechanism_ssl].\n",
		"advanced.config":   "[].\n",
		"rabbitmq-env.conf": "",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(b.Dir, name), []byte(data), 0o600); err != nil {
			return fmt.Errorf("rabbittest: %w", err)
		}
	}
	return nil
}

// writePKI makes a CA, the server's certificate (for 127.0.0.1 and
// localhost) and one client certificate per identity, CN = user name.
func (b *Broker) writePKI() error {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("rabbittest: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "skyline test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("rabbittest: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("rabbittest: %w", err)
	}
	b.ca = x509.NewCertPool()
	b.ca.AddCert(caCert)
	if err := writePEM(filepath.Join(b.Dir, "ca.pem"), "CERTIFICATE", caDER); err != nil {
		return err
	}
	issue := func(serial int64, cn string, server bool, file string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("rabbittest: %w", err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"skyline tests"}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.ParseIP(b.host)}
			tmpl.DNSNames = []string{"localhost"}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("rabbittest: %w", err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("rabbittest: %w", err)
		}
		if err := writePEM(filepath.Join(b.Dir, file+".pem"), "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(b.Dir, file+".key"), "PRIVATE KEY", kder); err != nil {
			return err
		}
		if !server {
			b.certs[cn] = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		}
		return nil
	}
	if err := issue(2, "localhost", true, "server"); err != nil {
		return err
	}
	for i, id := range []string{ListenerUser, PublisherUser, StrangerUser} {
		if err := issue(int64(10+i), id, false, id); err != nil {
			return err
		}
	}
	return nil
}

func writePEM(path, typ string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("rabbittest: %w", err)
	}
	return nil
}
