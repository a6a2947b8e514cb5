package backend

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// RoundRobin is the service config of the plugin's default connector deployment.
const RoundRobin = `{"loadBalancingConfig": [{"round_robin":{}}]}`

// Deployment is the plugin's configuration of one connector endpoint.
type Deployment struct {
	Endpoint             string
	Insecure             bool
	DefaultServiceConfig string
	// Timeouts per operation ("CreateTask", "GetTask", ...); DefaultTimeout otherwise, 0 = none.
	Timeouts       map[string]time.Duration
	DefaultTimeout time.Duration
}

// DefaultDeployment is the plugin's default connector settings pointed at endpoint.
func DefaultDeployment(endpoint string) Deployment {
	return Deployment{Endpoint: endpoint, Insecure: true, DefaultServiceConfig: RoundRobin,
		DefaultTimeout: 10 * time.Second}
}

// Client is the connection the plugin keeps per endpoint, with its dial options: TLS
// against the system pool (so SSL_CERT_FILE) unless insecure, the service config,
// keepalive 30 s / 10 s, and grpc-go's default 4 MiB receive limit left as it is.
type Client struct {
	schema *Schema
	dep    Deployment
	conn   *grpc.ClientConn
}

// Dial connects lazily, as the plugin does (grpc.Dial: no blocking on the first connect).
func Dial(schema *Schema, dep Deployment) (*Client, error) {
	var opts []grpc.DialOption
	if dep.Insecure {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, "")))
	}
	if dep.DefaultServiceConfig != "" {
		opts = append(opts, grpc.WithDefaultServiceConfig(dep.DefaultServiceConfig))
	}
	opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: 30 * time.Second, Timeout: 10 * time.Second,
	}))
	conn, err := grpc.Dial(dep.Endpoint, opts...) //nolint:staticcheck // what the plugin calls
	if err != nil {
		return nil, err
	}
	return &Client{schema: schema, dep: dep, conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Call invokes service/method with the operation's deadline; the response is a new
// message of the named type.
func (c *Client) Call(ctx context.Context, service, method string, req proto.Message,
	respType string) (proto.Message, error) {
	timeout := c.dep.DefaultTimeout
	if t, ok := c.dep.Timeouts[method]; ok {
		timeout = t
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	resp := c.schema.New(respType)
	if err := c.conn.Invoke(ctx, c.schema.Method(service, method), req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Categories lists the (task type, version) pairs the endpoint serves, as the plugin's
// connector watcher reads them from ListConnectors.
func (c *Client) Categories(ctx context.Context) (map[string]bool, error) {
	pkg := c.schema.Messages
	resp, err := c.Call(ctx, "ConnectorMetadataService", "ListConnectors",
		c.schema.New(pkg+".ListConnectorsRequest"), pkg+".ListConnectorsResponse")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	connectors, _ := c.schema.Tree(resp)["connectors"].([]any)
	for _, connector := range connectors {
		categories, _ := connector.(map[string]any)["supported_task_categories"].([]any)
		for _, category := range categories {
			cat := category.(map[string]any)
			out[categoryKey(str(cat["name"]), num(cat["version"]))] = true
		}
	}
	return out, nil
}

func categoryKey(name string, version int) string { return fmt.Sprintf("%s/%d", name, version) }

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case string:
		var i int
		_, _ = fmt.Sscan(n, &i)
		return i
	}
	return 0
}
