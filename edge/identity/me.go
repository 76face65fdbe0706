package identity

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/tenant"
	"github.com/wardhq/ward/actors/usertenants"
	"github.com/wardhq/ward/edge/problem"
	"github.com/wardhq/ward/protocol"
)

// AccessContext is the answer of GET /identity/me/access-context.
type AccessContext struct {
	Sub     string          `json:"sub"`
	APIKey  *KeyRef         `json:"api_key,omitempty"`
	Tenants []TenantContext `json:"tenants"`
	// Truncated: the caller belongs to more tenants than one answer lists.
	Truncated bool `json:"truncated,omitempty"`
}

// KeyRef names the API key a request was made with.
type KeyRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// TenantContext is the caller's standing in one tenant.
type TenantContext struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Slug        string      `json:"slug"`
	Memberships []NodeRoles `json:"memberships"`
	Effective   []NodeRoles `json:"effective"`
	// Scopes are an API key's scopes (absent for users).
	Scopes []string `json:"scopes,omitempty"`
}

// NodeRoles is a set of roles at one node of a tenant's hierarchy.
type NodeRoles struct {
	NodeID   string   `json:"node_id"`
	NodePath []string `json:"node_path"`
	NodeType string   `json:"node_type"`
	Roles    []string `json:"roles"`
}

func enumName(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

func nodeRoles(in []*protocol.NodeRoles) []NodeRoles {
	out := make([]NodeRoles, 0, len(in))
	for _, n := range in {
		roles := make([]string, 0, len(n.GetRoles()))
		for _, r := range n.GetRoles() {
			roles = append(roles, enumName(r.String(), "ROLE_"))
		}
		out = append(out, NodeRoles{NodeID: n.GetNodeId(), NodePath: n.GetPath(), NodeType: enumName(n.GetType().String(), "NODE_TYPE_"), Roles: roles})
	}
	return out
}

// nobody is a subject no user has: asking a tenant for its access context
// yields the tenant's name and slug with no roles, which is what an API key
// (a tenant's, not a user's) is shown.
var nobody = uuid.Nil.String()

func (h *handler) accessContext(w http.ResponseWriter, r *http.Request) {
	h.withAuth(w, r, func(ctx context.Context, p *principal) {
		switch {
		case p.key != nil:
			ac, err := h.tenantContext(ctx, p.tenant, nobody)
			if err != nil {
				h.actorError(w, r, err)
				return
			}
			tc := toTenant(ac)
			tc.Scopes = slices.Clone(p.key.GetScopes())
			if tc.Scopes == nil {
				tc.Scopes = []string{}
			}
			writeJSON(w, http.StatusOK, AccessContext{Sub: p.subject, APIKey: &KeyRef{ID: p.key.GetId(), Name: p.key.GetName()}, Tenants: []TenantContext{tc}})
		case p.service:
			problem.Write(w, http.StatusForbidden, "forbidden", "a service-account token has no user access context")
		default:
			h.userContext(ctx, w, r, p)
		}
	})
}

func (h *handler) tenantContext(ctx context.Context, tid, user string) (*protocol.AccessContext, error) {
	m, err := h.cfg.Actors.Request(ctx, tenant.KindName, tid, &protocol.GetAccessContext{User: user})
	if err != nil {
		return nil, err
	}
	ac, ok := m.(*protocol.AccessContext)
	if !ok {
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "tenant answered %s", protocol.TypeName(m))
	}
	return ac, nil
}

func toTenant(ac *protocol.AccessContext) TenantContext {
	return TenantContext{ID: ac.GetTenantId(), Name: ac.GetTenantName(), Slug: ac.GetTenantSlug(),
		Memberships: nodeRoles(ac.GetMemberships()), Effective: nodeRoles(ac.GetEffective())}
}

// userContext lists the tenants the user holds a role in: the token's
// tenant and every tenant the user's index names now (not the token's
// tids, which may be up to 15 minutes old).
func (h *handler) userContext(ctx context.Context, w http.ResponseWriter, r *http.Request, p *principal) {
	var tids []string
	if p.tenant != "" {
		tids = append(tids, p.tenant)
	}
	if emailindex.ValidUUID(p.subject) {
		m, err := h.cfg.Actors.Request(ctx, usertenants.KindName, p.subject, &protocol.ListTenants{})
		if err != nil {
			h.actorError(w, r, err)
			return
		}
		if l, ok := m.(*protocol.UserTenantList); ok {
			tids = append(tids, l.GetTenantIds()...)
		}
	}
	slices.Sort(tids)
	tids = slices.Compact(tids)
	out := AccessContext{Sub: p.subject, Tenants: []TenantContext{}}
	if len(tids) > h.cfg.MaxTenants {
		tids, out.Truncated = tids[:h.cfg.MaxTenants], true
	}
	for _, tid := range tids {
		ac, err := h.tenantContext(ctx, tid, p.subject)
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_NOT_FOUND {
			continue
		}
		if err != nil {
			h.actorError(w, r, err)
			return
		}
		if len(ac.GetEffective()) > 0 {
			out.Tenants = append(out.Tenants, toTenant(ac))
		}
	}
	if len(out.Tenants) == 0 {
		problem.Write(w, http.StatusForbidden, "forbidden", "the caller holds no role in any tenant")
		return
	}
	writeJSON(w, http.StatusOK, out)
}
