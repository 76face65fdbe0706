package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/protocol"
)

// ClientsPath is the admin endpoint of the OAuth clients: GET lists, POST
// registers; ClientsPath/{id} reads (GET), updates (PUT) and disables
// (DELETE) one; ClientsPath/{id}/secret rotates its secret (POST).
const ClientsPath = "/cluster/clients"

// ClientPath is the admin path of client id.
func ClientPath(id string) string { return ClientsPath + "/" + url.PathEscape(id) }

// ErrUnknownClient: no registration under that id.
var ErrUnknownClient = errors.New("no such client")

// ErrClientExists: a registration (possibly disabled) holds the id. Ids
// are never reused: consent is remembered per client id.
var ErrClientExists = errors.New("a client with this id exists (ids are never reused, disabled ones included)")

// ClientKey is a client's public key for private_key_jwt and the JWT
// profile, as operators send and see it.
type ClientKey struct {
	JWK     json.RawMessage `json:"jwk"`
	Expires *time.Time      `json:"expires,omitempty"`
}

// ClientSpec is an OAuth client registration as an operator writes it
// (`ward clients create --file`): everything but the secret, which the
// cluster generates.
type ClientSpec struct {
	ID                     string      `json:"client_id"`
	Name                   string      `json:"name,omitempty"`
	Public                 bool        `json:"public,omitempty"`
	FirstParty             bool        `json:"first_party,omitempty"`
	DevMode                bool        `json:"dev_mode,omitempty"`
	Disabled               bool        `json:"disabled,omitempty"`
	Tenant                 string      `json:"tenant,omitempty"`
	RedirectURIs           []string    `json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs []string    `json:"post_logout_redirect_uris,omitempty"`
	GrantTypes             []string    `json:"grant_types"`
	Scopes                 []string    `json:"scopes,omitempty"`
	Keys                   []ClientKey `json:"keys,omitempty"`
}

// ClientInfo is a registration as the admin API shows it: never a secret
// or its hash.
type ClientInfo struct {
	ClientSpec
	Created               time.Time  `json:"created"`
	HasSecret             bool       `json:"has_secret"`
	PreviousSecretExpires *time.Time `json:"previous_secret_expires,omitempty"`
}

// ClientSecretAnswer is the answer of a registration or a secret
// rotation: the secret, shown this once.
type ClientSecretAnswer struct {
	Client       ClientInfo `json:"client"`
	ClientSecret string     `json:"client_secret,omitempty"`
}

// RotateSecretRequest is the body of POST ClientPath(id)/secret.
type RotateSecretRequest struct {
	// OverlapSeconds is how long the old secret stays valid; nil means
	// a day, 0 ends it at once (a leaked secret).
	OverlapSeconds *int64 `json:"overlap_seconds,omitempty"`
}

// DefaultSecretOverlap is how long a rotated secret stays valid unless
// told otherwise.
const DefaultSecretOverlap = 24 * time.Hour

func (s ClientSpec) proto() (*protocol.OIDCClient, error) {
	c := &protocol.OIDCClient{Id: s.ID, Name: s.Name, Public: s.Public, FirstParty: s.FirstParty, DevMode: s.DevMode,
		Disabled: s.Disabled, Tenant: s.Tenant, RedirectUris: s.RedirectURIs, PostLogoutRedirectUris: s.PostLogoutRedirectURIs,
		GrantTypes: s.GrantTypes, Scopes: s.Scopes}
	for i, k := range s.Keys {
		var head struct {
			Kid string `json:"kid"`
		}
		if err := json.Unmarshal(k.JWK, &head); err != nil {
			return nil, fmt.Errorf("keys[%d]: jwk is not a JSON object: %w", i, err)
		}
		ck := &protocol.OIDCClientKey{Kid: head.Kid, JwkJson: k.JWK}
		if k.Expires != nil {
			ck.ExpiresUnixNano = k.Expires.UnixNano()
		}
		c.Keys = append(c.Keys, ck)
	}
	return c, nil
}

// InfoOf is the admin view of c.
func InfoOf(c *protocol.OIDCClient) ClientInfo {
	in := ClientInfo{ClientSpec: ClientSpec{ID: c.GetId(), Name: c.GetName(), Public: c.GetPublic(), FirstParty: c.GetFirstParty(),
		DevMode: c.GetDevMode(), Disabled: c.GetDisabled(), Tenant: c.GetTenant(), RedirectURIs: c.GetRedirectUris(),
		PostLogoutRedirectURIs: c.GetPostLogoutRedirectUris(), GrantTypes: c.GetGrantTypes(), Scopes: c.GetScopes()},
		Created: time.Unix(0, c.GetCreatedUnixNano()).UTC(), HasSecret: len(c.GetSecretSha256()) > 0}
	for _, k := range c.GetKeys() {
		ck := ClientKey{JWK: json.RawMessage(k.GetJwkJson())}
		if k.GetExpiresUnixNano() != 0 {
			t := time.Unix(0, k.GetExpiresUnixNano()).UTC()
			ck.Expires = &t
		}
		in.Keys = append(in.Keys, ck)
	}
	if e := c.GetPreviousSecretExpiresUnixNano(); len(c.GetPreviousSecretSha256()) > 0 && e > time.Now().UnixNano() {
		t := time.Unix(0, e).UTC()
		in.PreviousSecretExpires = &t
	}
	return in
}

// Clients returns the registrations in this node's replica, by id.
func (n *Node) Clients() ([]ClientInfo, error) {
	var out []ClientInfo
	for k, v := range n.meta.Values(oidcclient.KeyPrefix) {
		c := &protocol.OIDCClient{}
		if err := proto.Unmarshal(v, c); err != nil {
			return nil, fmt.Errorf("cluster: client %s: %w", k, err)
		}
		out = append(out, InfoOf(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Client returns registration id from this node's replica.
func (n *Node) Client(id string) (ClientInfo, error) {
	c, _, err := n.loadClient(id)
	if err != nil {
		return ClientInfo{}, err
	}
	return InfoOf(c), nil
}

func (n *Node) loadClient(id string) (*protocol.OIDCClient, []byte, error) {
	raw, ok := n.meta.Value(oidcclient.Key(id))
	if !ok {
		return nil, nil, ErrUnknownClient
	}
	c := &protocol.OIDCClient{}
	if err := proto.Unmarshal(raw, c); err != nil {
		return nil, nil, fmt.Errorf("cluster: client %s: %w", id, err)
	}
	return c, raw, nil
}

// InvalidClientError is a registration the domain rules refuse.
type InvalidClientError struct{ Err error }

func (e *InvalidClientError) Error() string { return e.Err.Error() }
func (e *InvalidClientError) Unwrap() error { return e.Err }

// RegisterClient stores a new registration from spec on the meta leader
// (forwarding there from any member) and returns it with its secret when
// the cluster made one.
func (n *Node) RegisterClient(ctx context.Context, spec ClientSpec) (ClientSecretAnswer, error) {
	var ans ClientSecretAnswer
	if !n.meta.IsLeader() {
		return ans, n.forwardMeta(ctx, http.MethodPost, ClientsPath, spec, &ans)
	}
	p, err := spec.proto()
	if err != nil {
		return ans, &InvalidClientError{err}
	}
	c, secret, err := oidcclient.Register(p, rand.Reader, time.Now())
	if err != nil {
		return ans, &InvalidClientError{err}
	}
	b, err := proto.Marshal(c)
	if err != nil {
		return ans, err
	}
	err = n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{
		Key: oidcclient.Key(c.GetId()), Value: b, ExpectValue: []byte{}}}})
	if errors.Is(err, meta.ErrStale) {
		return ans, ErrClientExists
	}
	if err != nil {
		return ans, fmt.Errorf("cluster: register client %s: %w", c.GetId(), err)
	}
	n.log.Warn("OAuth client registered by an operator", "client", c.GetId(), "public", c.GetPublic())
	return ClientSecretAnswer{Client: InfoOf(c), ClientSecret: secret}, nil
}

// UpdateClient replaces client id's settings with spec (secrets stay).
func (n *Node) UpdateClient(ctx context.Context, id string, spec ClientSpec) (ClientInfo, error) {
	if !n.meta.IsLeader() {
		var ans ClientInfo
		return ans, n.forwardMeta(ctx, http.MethodPut, ClientPath(id), spec, &ans)
	}
	if spec.ID == "" {
		spec.ID = id
	}
	if spec.ID != id {
		return ClientInfo{}, &InvalidClientError{fmt.Errorf("client_id %q in the body names another client than the path's %q", spec.ID, id)}
	}
	p, err := spec.proto()
	if err != nil {
		return ClientInfo{}, &InvalidClientError{err}
	}
	c, err := n.changeClient(ctx, id, func(cur *protocol.OIDCClient) (*protocol.OIDCClient, error) {
		next, err := oidcclient.Update(cur, p)
		if err != nil {
			return nil, &InvalidClientError{err}
		}
		return next, nil
	})
	if err != nil {
		return ClientInfo{}, err
	}
	n.log.Warn("OAuth client updated by an operator", "client", id, "disabled", c.GetDisabled())
	return InfoOf(c), nil
}

// DisableClient revokes client id: it is refused everywhere from now on
// (its access tokens run out within their lifetime); the registration
// stays so that the id is never given to another client.
func (n *Node) DisableClient(ctx context.Context, id string) (ClientInfo, error) {
	if !n.meta.IsLeader() {
		var ans ClientInfo
		return ans, n.forwardMeta(ctx, http.MethodDelete, ClientPath(id), nil, &ans)
	}
	c, err := n.changeClient(ctx, id, func(cur *protocol.OIDCClient) (*protocol.OIDCClient, error) {
		next := protocol.CloneOIDCClient(cur)
		next.Disabled = true
		return next, nil
	})
	if err != nil {
		return ClientInfo{}, err
	}
	n.log.Warn("OAuth client disabled by an operator", "client", id)
	return InfoOf(c), nil
}

// RotateClientSecret gives client id a new secret; the old one stays valid
// for overlap.
func (n *Node) RotateClientSecret(ctx context.Context, id string, overlap time.Duration) (ClientSecretAnswer, error) {
	var ans ClientSecretAnswer
	if !n.meta.IsLeader() {
		secs := int64(overlap / time.Second)
		return ans, n.forwardMeta(ctx, http.MethodPost, ClientPath(id)+"/secret", RotateSecretRequest{OverlapSeconds: &secs}, &ans)
	}
	var secret string
	c, err := n.changeClient(ctx, id, func(cur *protocol.OIDCClient) (*protocol.OIDCClient, error) {
		next := protocol.CloneOIDCClient(cur)
		s, err := oidcclient.RotateSecret(next, rand.Reader, time.Now(), overlap)
		if err != nil {
			return nil, &InvalidClientError{err}
		}
		secret = s
		return next, nil
	})
	if err != nil {
		return ans, err
	}
	n.log.Warn("OAuth client secret rotated by an operator", "client", id, "overlap", overlap)
	return ClientSecretAnswer{Client: InfoOf(c), ClientSecret: secret}, nil
}

// changeClient is a compare-and-set read-modify-write of client id on the
// meta leader, retried when another write came in between.
func (n *Node) changeClient(ctx context.Context, id string, change func(*protocol.OIDCClient) (*protocol.OIDCClient, error)) (*protocol.OIDCClient, error) {
	for attempt := 1; ; attempt++ {
		cur, raw, err := n.loadClient(id)
		if err != nil {
			return nil, err
		}
		next, err := change(cur)
		if err != nil {
			return nil, err
		}
		b, err := proto.Marshal(next)
		if err != nil {
			return nil, err
		}
		err = n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{
			Key: oidcclient.Key(id), Value: b, ExpectValue: raw}}})
		if errors.Is(err, meta.ErrStale) && attempt < rotateAttempts {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cluster: change client %s: %w", id, err)
		}
		return next, nil
	}
}
