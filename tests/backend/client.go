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
// keepalive 30 s / 10 s where the dialect's plugin sets it, and grpc-go's default 4 MiB
// receive limit left as it is.
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
	if schema.Keepalive {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: 30 * time.Second, Timeout: 10 * time.Second,
		}))
	}
	conn, err := grpc.Dial(dep.Endpoint, opts...) //nolint:staticcheck // what the plugin calls
	if err != nil {
		return nil, err
	}
	return &Client{schema: schema, dep: dep, conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// operation is the key of a method's deadline in the deployment's timeouts: both
// plugins look the metadata service's list call up as "ListConnectors".
func (c *Client) operation(ctx context.Context, method string) (context.Context, context.CancelFunc) {
	if method == c.schema.List {
		method = "ListConnectors"
	}
	timeout := c.dep.DefaultTimeout
	if t, ok := c.dep.Timeouts[method]; ok {
		timeout = t
	}
	if timeout > 0 {
		return context.WithTimeout(ctx, timeout)
	}
	return ctx, func() {}
}

// Call invokes service/method with the operation's deadline; the response is a new
// message of the named type.
func (c *Client) Call(ctx context.Context, service, method string, req proto.Message,
	respType string) (proto.Message, error) {
	ctx, cancel := c.operation(ctx, method)
	defer cancel()
	resp := c.schema.New(respType)
	if err := c.conn.Invoke(ctx, c.schema.Method(service, method), req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Exchange is a bidirectional streaming call as the sync path makes it, under the
// operation's deadline: every request sent, the send side closed, then the first answer
// received (a new message of the named type).
func (c *Client) Exchange(ctx context.Context, service, method string, reqs []proto.Message,
	respType string) (proto.Message, error) {
	ctx, cancel := c.operation(ctx, method)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: method, ServerStreams: true, ClientStreams: true}
	stream, err := c.conn.NewStream(ctx, desc, c.schema.Method(service, method))
	if err != nil {
		return nil, fmt.Errorf("failed to execute task from connector with %v", err)
	}
	for _, req := range reqs {
		if err := stream.SendMsg(req); err != nil {
			return nil, fmt.Errorf("failed to send %s with error: %w", req.ProtoReflect().Descriptor().Name(), err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	resp := c.schema.New(respType)
	if err := stream.RecvMsg(resp); err != nil {
		return nil, fmt.Errorf("failed to receive stream from server %w", err)
	}
	return resp, nil
}

// Categories lists the (task type, version) pairs the endpoint serves, each with whether
// its connector is sync, as the plugin's connector watcher reads them from its list call
// (with Flyte 1's deprecated supported_task_types as version 0 where listed).
func (c *Client) Categories(ctx context.Context) (map[string]bool, error) {
	pkg := c.schema.Messages
	resp, err := c.Call(ctx, c.schema.Metadata, c.schema.List,
		c.schema.New(pkg+"."+c.schema.List+"Request"), pkg+"."+c.schema.List+"Response")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	connectors, _ := c.schema.Tree(resp)[c.schema.Listed].([]any)
	for _, connector := range connectors {
		entry := connector.(map[string]any)
		isSync, _ := entry["is_sync"].(bool)
		types, _ := entry["supported_task_types"].([]any)
		for _, name := range types {
			out[categoryKey(str(name), 0)] = isSync
		}
		categories, _ := entry["supported_task_categories"].([]any)
		for _, category := range categories {
			cat := category.(map[string]any)
			out[categoryKey(str(cat["name"]), num(cat["version"]))] = isSync
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
