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
// clients, once per data directory: a second start reads demo.json back.
func seedDemo(ctx context.Context, dataDir, issuer string, part *cluster.Node, hasher *password.Hasher) (*demoFile, error) {
	path := filepath.Join(dataDir, "demo.json")
	if b, err := os.ReadFile(path); err == nil {
		var d demoFile
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("demo data %s: %w", path, err)
		}
		return &d, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	d := &demoFile{Tenant: demoTenant, Issuer: issuer}
	var r requester = part
	if _, err := r.Request(ctx, tenant.KindName, demoTenant, &protocol.CreateTenant{Name: "Demo Hospital", Slug: demoTenant}); err != nil &&
		actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS {
		return nil, fmt.Errorf("demo tenant: %w", err)
	}
	for i, role := range demoRoles {
		name := strings.ToLower(strings.TrimPrefix(role.String(), "ROLE_"))
		u := demoUser{Role: name, Subject: uuid.NewString(), Email: strings.ReplaceAll(name, "_", "-") + "@demo.ward.test", Password: randomToken(12)}
		if err := registerDemoUser(ctx, r, hasher, u, fmt.Sprintf("+4930%07d", 1000000+i)); err != nil {
			return nil, fmt.Errorf("demo user %s: %w", u.Email, err)
		}
		if _, err := r.Request(ctx, tenant.KindName, demoTenant, &protocol.GrantRole{User: u.Subject, NodeId: demoTenant, Role: role}); err != nil {
			return nil, fmt.Errorf("demo role %s: %w", name, err)
		}
		d.Users = append(d.Users, u)
	}
	// dev_mode: a browser app on http://localhost is a development setup.
	web := &protocol.OIDCClient{Id: "demo-web", Name: "Demo web app", Public: true, Tenant: demoTenant, DevMode: true,
		RedirectUris: []string{"http://localhost:5173/callback", "http://127.0.0.1:5173/callback"},
		GrantTypes:   []string{oidcclient.GrantAuthorizationCode, oidcclient.GrantRefreshToken},
		Scopes:       []string{"profile", "email", "phone"}}
	backendSecret := randomToken(32)
	backend := &protocol.OIDCClient{Id: "demo-backend", Name: "Demo backend", SecretSha256: oidcclient.HashSecret(backendSecret), Tenant: demoTenant,
		RedirectUris: []string{"http://localhost:8081/callback"},
		GrantTypes:   []string{oidcclient.GrantAuthorizationCode, oidcclient.GrantRefreshToken},
		Scopes:       []string{"profile", "email"}}
	svcSecret := randomToken(32)
	svc := &protocol.OIDCClient{Id: "demo-service", Name: "Demo service account", SecretSha256: oidcclient.HashSecret(svcSecret), Tenant: demoTenant,
		GrantTypes: []string{oidcclient.GrantClientCredentials}, Scopes: []string{"vitals.read"}}
	for _, c := range []*protocol.OIDCClient{web, backend, svc} {
		if err := putClient(ctx, part, c); err != nil {
			return nil, err
		}
	}
	d.Clients = []demoClient{
		{ID: web.Id, Kind: "public web client (PKCE)", RedirectURIs: web.RedirectUris, GrantTypes: web.GrantTypes},
		{ID: backend.Id, Kind: "confidential client", Secret: backendSecret, RedirectURIs: backend.RedirectUris, GrantTypes: backend.GrantTypes},
		{ID: svc.Id, Kind: "service account", Secret: svcSecret, GrantTypes: svc.GrantTypes},
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return d, nil
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

// registerDemoUser runs the registration a person would: reserve the
// address, register, verify e-mail and phone, set the password.
func registerDemoUser(ctx context.Context, r requester, hasher *password.Hasher, u demoUser, phone string) error {
	id := user.ID(demoTenant, u.Subject)
	if _, err := r.Request(ctx, emailindex.KindName, emailindex.ID(demoTenant, u.Email), &protocol.EmailReserve{UserId: u.Subject}); err != nil {
		return fmt.Errorf("reserve e-mail: %w", err)
	}
	first, _, _ := strings.Cut(u.Role, "_")
	m, err := r.Request(ctx, user.KindName, id, &protocol.RegisterUser{FirstName: "Demo", LastName: strings.ToUpper(first[:1]) + first[1:], Phone: phone, Email: u.Email})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	token := m.(*protocol.UserRegistration).GetEmailVerification().GetToken()
	if _, err := r.Request(ctx, user.KindName, id, &protocol.VerifyEmail{Token: token}); err != nil {
		return fmt.Errorf("verify e-mail: %w", err)
	}
	m, err = r.Request(ctx, user.KindName, id, &protocol.StartPhoneVerification{})
	if err != nil {
		return fmt.Errorf("start phone verification: %w", err)
	}
	if _, err := r.Request(ctx, user.KindName, id, &protocol.VerifyPhone{Code: m.(*protocol.PhoneVerificationIssued).GetCode()}); err != nil {
		return fmt.Errorf("verify phone: %w", err)
	}
	phc, err := hasher.Hash(ctx, u.Password)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	if _, err := r.Request(ctx, user.KindName, id, &protocol.SetPassword{Phc: phc}); err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return nil
}
