// Package auth owns the OAuth 2.0 token lifecycle against Google OAuth: it
// decides when a participant's token needs refreshing, refreshes it explicitly,
// saves the result (compare-and-swap, committed) before anyone may use it, and
// runs the authorization-code consent flow with PKCE.
//
// It deliberately never hands out an oauth2.Config.Client or a reuse token
// source: those refresh in memory and forget, and a rotated refresh token that
// is used before it is saved is lost for good.
package auth
