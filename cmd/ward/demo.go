package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/actors/tenant"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/protocol"
)

// demoTenant is the tenant `ward dev` seeds.
const demoTenant = "demo"

// demoFile is what `ward dev` writes into its data directory: the demo
// tenant's users and clients with their development credentials. A
// production node never creates credentials by itself.
type demoFile struct {
	Tenant  string       `json:"tenant"`
	Issuer  string       `json:"issuer"`
	Users   []demoUser   `json:"users"`
	Clients []demoClient `json:"clients"`
}

type demoUser struct {
	Role     string `json:"role"`
	Subject  string `json:"subject"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

type demoClient struct {
	ID           string   `json:"client_id"`
	Kind         string   `json:"kind"` // public web, confidential, service account
	Secret       string   `json:"client_secret,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	GrantTypes   []string `json:"grant_types"`
}

var demoRoles = []protocol.Role{
	protocol.Role_ROLE_ADMIN, protocol.Role_ROLE_DOCTOR, protocol.Role_ROLE_NURSE, protocol.Role_ROLE_SUPERVISOR,
	protocol.Role_ROLE_PHARMACIST, protocol.Role_ROLE_KYC_VERIFIER, protocol.Role_ROLE_PATIENT,
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// requester is the node's request path (cluster.Node).
type requester interface {
	Request(ctx context.Context, kind, id string, msg protocol.Message) (protocol.Message, error)
}

// seedDemo creates the demo tenant, one verified user per role, and three
// clients, and writes demo.json. It is resumable: the plan (ids, passwords,
// secrets) is written first to demo.plan.json, every step checks what is
// already done, and demo.json appears only when all of it is; a start
// interrupted half-way finishes the same plan next time.
func seedDemo(ctx context.Context, dataDir, issuer string, part *cluster.Node, hasher *password.Hasher) (*demoFile, error) {
	path := filepath.Join(dataDir, "demo.json")
	if d, err := readDemo(path); err != nil || d != nil {
		return d, err
	}
	planPath := filepath.Join(dataDir, "demo.plan.json")
	d, err := readDemo(planPath)
	if err != nil {
		return nil, err
	}
	if d == nil {
		d = newDemoPlan(issuer)
		if err := writeDemo(planPath, d); err != nil {
			return nil, err
		}
	}
	var r requester = part
	if _, err := r.Request(ctx, tenant.KindName, demoTenant, &protocol.CreateTenant{Name: "Demo Hospital", Slug: demoTenant}); err != nil &&
		actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS {
		return nil, fmt.Errorf("demo tenant: %w", err)
	}
	for i, u := range d.Users {
		if err := registerDemoUser(ctx, r, hasher, u, fmt.Sprintf("+4930%07d", 1000000+i)); err != nil {
			return nil, fmt.Errorf("demo user %s: %w", u.Email, err)
		}
		if _, err := r.Request(ctx, tenant.KindName, demoTenant, &protocol.GrantRole{User: u.Subject, NodeId: demoTenant, Role: demoRoles[i]}); err != nil {
			return nil, fmt.Errorf("demo role %s: %w", u.Role, err)
		}
	}
	for _, c := range demoClients(d) {
		if err := putClient(ctx, part, c); err != nil {
			return nil, err
		}
	}
	if err := writeDemo(path, d); err != nil {
		return nil, err
	}
	_ = os.Remove(planPath)
	return d, nil
}

func newDemoPlan(issuer string) *demoFile {
	d := &demoFile{Tenant: demoTenant, Issuer: issuer}
	for _, role := range demoRoles {
		name := strings.ToLower(strings.TrimPrefix(role.String(), "ROLE_"))
		d.Users = append(d.Users, demoUser{Role: name, Subject: uuid.NewString(),
			Email: strings.ReplaceAll(name, "_", "-") + "@demo.ward.test", Password: randomToken(12)})
	}
	d.Clients = []demoClient{
		{ID: "demo-web", Kind: "public web client (PKCE)", RedirectURIs: []string{"http://localhost:5173/callback", "http://127.0.0.1:5173/callback"},
			GrantTypes: []string{oidcclient.GrantAuthorizationCode, oidcclient.GrantRefreshToken}},
		{ID: "demo-backend", Kind: "confidential client", Secret: randomToken(32), RedirectURIs: []string{"http://localhost:8081/callback"},
			GrantTypes: []string{oidcclient.GrantAuthorizationCode, oidcclient.GrantRefreshToken}},
		{ID: "demo-service", Kind: "service account", Secret: randomToken(32), GrantTypes: []string{oidcclient.GrantClientCredentials}},
	}
	return d
}

// demoClients are the registrations of the plan's clients.
func demoClients(d *demoFile) []*protocol.OIDCClient {
	scopes := map[string][]string{"demo-web": {"profile", "email", "phone"}, "demo-backend": {"profile", "email"}, "demo-service": {"vitals.read", "events:read"}}
	var out []*protocol.OIDCClient
	for _, c := range d.Clients {
		reg := &protocol.OIDCClient{Id: c.ID, Name: c.Kind, Tenant: d.Tenant, RedirectUris: c.RedirectURIs, GrantTypes: c.GrantTypes, Scopes: scopes[c.ID]}
		// The demo web app and service are ours; the backend plays a
		// third-party app, so its users are asked for consent.
		reg.FirstParty = c.ID != "demo-backend"
		if c.Secret == "" {
			// A browser app on http://localhost is a development setup.
			reg.Public, reg.DevMode = true, true
		} else {
			reg.SecretSha256 = oidcclient.HashSecret(c.Secret)
		}
		out = append(out, reg)
	}
	return out
}

func readDemo(path string) (*demoFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d demoFile
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("demo data %s: %w", path, err)
	}
	return &d, nil
}

// writeDemo writes atomically (temp file + rename), owner-only: it holds
// passwords.
func writeDemo(path string, d *demoFile) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// putClient validates and stores a client registration.
func putClient(ctx context.Context, part *cluster.Node, c *protocol.OIDCClient) error {
	if err := oidcclient.Validate(c); err != nil {
		return err
	}
	b, err := proto.Marshal(c)
	if err != nil {
		return err
	}
	return part.PutMetaValue(ctx, oidcclient.Key(c.GetId()), b)
}

// registerDemoUser runs the registration a person would (reserve the
// address, register, verify e-mail and phone, set the password), skipping
// the steps an interrupted earlier run finished.
func registerDemoUser(ctx context.Context, r requester, hasher *password.Hasher, u demoUser, phone string) error {
	id := user.ID(demoTenant, u.Subject)
	if _, err := r.Request(ctx, emailindex.KindName, emailindex.ID(demoTenant, u.Email), &protocol.EmailReserve{UserId: u.Subject}); err != nil {
		return fmt.Errorf("reserve e-mail: %w", err)
	}
	var status *protocol.UserStatus
	hasPassword := false
	m, err := r.Request(ctx, user.KindName, id, &protocol.GetProfile{})
	switch {
	case err == nil:
		p := m.(*protocol.UserProfile)
		status, hasPassword = p.GetStatus(), p.GetHasPassword()
	case actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_NOT_FOUND || actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
		first, _, _ := strings.Cut(u.Role, "_")
		m, err := r.Request(ctx, user.KindName, id, &protocol.RegisterUser{FirstName: "Demo", LastName: strings.ToUpper(first[:1]) + first[1:], Phone: phone, Email: u.Email})
		if err != nil {
			return fmt.Errorf("register: %w", err)
		}
		reg := m.(*protocol.UserRegistration)
		if _, err := r.Request(ctx, user.KindName, id, &protocol.VerifyEmail{Token: reg.GetEmailVerification().GetToken()}); err != nil {
			return fmt.Errorf("verify e-mail: %w", err)
		}
		status = &protocol.UserStatus{EmailVerified: true}
	default:
		return fmt.Errorf("profile: %w", err)
	}
	if !status.GetEmailVerified() {
		m, err := r.Request(ctx, user.KindName, id, &protocol.StartEmailVerification{})
		if err != nil {
			return fmt.Errorf("start e-mail verification: %w", err)
		}
		if _, err := r.Request(ctx, user.KindName, id, &protocol.VerifyEmail{Token: m.(*protocol.EmailVerificationIssued).GetToken()}); err != nil {
			return fmt.Errorf("verify e-mail: %w", err)
		}
	}
	if !status.GetPhoneVerified() {
		m, err := r.Request(ctx, user.KindName, id, &protocol.StartPhoneVerification{})
		if err != nil {
			return fmt.Errorf("start phone verification: %w", err)
		}
		if _, err := r.Request(ctx, user.KindName, id, &protocol.VerifyPhone{Code: m.(*protocol.PhoneVerificationIssued).GetCode()}); err != nil {
			return fmt.Errorf("verify phone: %w", err)
		}
	}
	if !hasPassword {
		phc, err := hasher.Hash(ctx, u.Password)
		if err != nil {
			return fmt.Errorf("hash password: %w", err)
		}
		if _, err := r.Request(ctx, user.KindName, id, &protocol.SetPassword{Phc: phc}); err != nil {
			return fmt.Errorf("set password: %w", err)
		}
	}
	return nil
}
