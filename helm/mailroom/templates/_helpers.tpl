{{/*
Names and labels, the usual Helm way.
*/}}
{{- define "mailroom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mailroom.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mailroom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mailroom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailroom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mailroom.labels" -}}
helm.sh/chart: {{ include "mailroom.chart" . }}
{{ include "mailroom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mailroom.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The port the container listens on for one protocol: the real port when the pod may bind
low ports (sysctl mode), else the protocol's highPort, which the Service maps back.
Call with (dict "root" $ "proto" $proto).
*/}}
{{- define "mailroom.containerPort" -}}
{{- if eq .root.Values.lowPorts.mode "remap" }}{{ .proto.highPort }}{{ else }}{{ .proto.port }}{{ end }}
{{- end }}

{{/* Where Secrets are mounted; the env variables point into these. */}}
{{- define "mailroom.accountsDir" -}}/run/secrets/mailroom/accounts{{- end }}
{{- define "mailroom.relayDir" -}}/run/secrets/mailroom/relay{{- end }}
{{- define "mailroom.tlsDir" -}}/run/secrets/mailroom/tls{{- end }}
{{- define "mailroom.storeDir" -}}/run/secrets/mailroom/store{{- end }}
{{- define "mailroom.storeCaDir" -}}/run/secrets/mailroom/store-ca{{- end }}
{{- define "mailroom.s3Dir" -}}/run/secrets/mailroom/s3{{- end }}

{{/* store.s3 with its defaults filled in, as JSON (a release upgraded with --reuse-values
from a chart without store.s3 has none). */}}
{{- define "mailroom.s3" -}}
{{- toJson (merge (dict) (.Values.store.s3 | default dict) (dict "url" "" "existingSecret" "" "accessKeyIdKey" "access-key-id" "secretAccessKeyKey" "secret-access-key")) }}
{{- end }}

{{/* Whether to render a PodDisruptionBudget: podDisruptionBudget.enabled, or by default
when more than one replica runs. Empty means no. */}}
{{- define "mailroom.pdbEnabled" -}}
{{- $on := gt (int .Values.replicaCount) 1 }}
{{- if not (kindIs "invalid" .Values.podDisruptionBudget.enabled) }}{{ $on = .Values.podDisruptionBudget.enabled }}{{ end }}
{{- if $on }}true{{ end }}
{{- end }}

{{/* The TLS Secret to mount, if any. */}}
{{- define "mailroom.tlsSecret" -}}
{{- if .Values.tls.existingSecret }}{{ .Values.tls.existingSecret }}
{{- else if .Values.tls.certManager.enabled }}{{ include "mailroom.fullname" . }}-tls
{{- end }}
{{- end }}

{{/*
Refuse value combinations that would deploy a broken or unsafe server.
*/}}
{{- define "mailroom.validate" -}}
{{- if and .Values.proxyProtocol.enabled (empty .Values.proxyProtocol.from) }}
{{- fail "proxyProtocol.enabled needs proxyProtocol.from: the load balancers' CIDRs (a PROXY header from anyone else is address spoofing)" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled .Values.tls.existingSecret }}
{{- fail "set either tls.certManager.enabled or tls.existingSecret, not both" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (empty .Values.tls.certManager.dnsNames) (empty .Values.mailroom.hostname) }}
{{- fail "tls.certManager needs mailroom.hostname (or tls.certManager.dnsNames)" }}
{{- end }}
{{- $pg := eq .Values.store.type "postgres" }}
{{- if and (gt (int .Values.replicaCount) 1) (not $pg) }}
{{- fail (printf "replicaCount %v needs store.type=postgres: with Maildir the data dir (mail, queue, keys) has exactly one writer, so only one replica can run" .Values.replicaCount) }}
{{- end }}
{{- if and $pg (empty .Values.store.postgres.existingSecret) }}
{{- fail "store.type=postgres needs store.postgres.existingSecret: a Secret holding the PostgreSQL URL (postgres://user:password@host/db?sslmode=verify-full) under key store.postgres.secretKey" }}
{{- end }}
{{- if hasKey .Values.env "MAILROOM_STORE" }}
{{- fail "set the store with store.type and store.postgres.existingSecret, not env.MAILROOM_STORE: env lands in a ConfigMap, and the URL holds a password" }}
{{- end }}
{{- if hasKey .Values.env "MAILROOM_S3_ACCESS_KEY_ID" }}
{{- fail "set the S3 key pair with store.s3.existingSecret, not env.MAILROOM_S3_ACCESS_KEY_ID: env lands in a ConfigMap" }}
{{- end }}
{{- if hasKey .Values.env "MAILROOM_S3_SECRET_ACCESS_KEY" }}
{{- fail "set the S3 key pair with store.s3.existingSecret, not env.MAILROOM_S3_SECRET_ACCESS_KEY: env lands in a ConfigMap, and it is a secret" }}
{{- end }}
{{- $s3 := include "mailroom.s3" . | fromJson }}
{{- if $s3.url }}
{{- if not $pg }}
{{- fail "store.s3.url needs store.type=postgres: message bodies go to a bucket only when the mail is in PostgreSQL" }}
{{- end }}
{{- if empty $s3.existingSecret }}
{{- fail "store.s3.url needs store.s3.existingSecret: a Secret holding the bucket's key pair under keys store.s3.accessKeyIdKey and store.s3.secretAccessKeyKey" }}
{{- end }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) }}
{{- fail "set podDisruptionBudget.minAvailable or podDisruptionBudget.maxUnavailable, not both" }}
{{- end }}
{{- end }}

{{/*
Every MAILROOM_* variable the chart sets, as a dict: typed values first, then .Values.env,
which wins. Rendered (sorted) into the ConfigMap.
*/}}
{{- define "mailroom.envDict" -}}
{{- $v := .Values.mailroom }}
{{- $env := dict "MAILROOM_DATA_DIR" "/data" }}
{{- $typed := dict
  "MAILROOM_HOSTNAME" $v.hostname
  "MAILROOM_DOMAINS" (join "," $v.domains)
  "MAILROOM_ACME" $v.acme
  "MAILROOM_ACME_EMAIL" $v.acmeEmail
  "MAILROOM_ACME_CHALLENGE" $v.acmeChallenge
  "MAILROOM_DKIM_SELECTOR" $v.dkimSelector
  "MAILROOM_PUBLIC_IPV4" $v.publicIPv4
  "MAILROOM_PUBLIC_IPV6" $v.publicIPv6
  "MAILROOM_MESSAGE_SIZE_LIMIT" $v.messageSizeLimit
  "MAILROOM_RELAY_HOST" $v.relayHost
  "MAILROOM_DNS_SERVERS" (join "," $v.dnsServers)
  "MAILROOM_TRUSTED_NETWORKS" (join "," $v.trustedNetworks)
  "MAILROOM_DNSBL" (join "," $v.dnsbl)
  "MAILROOM_RSPAMD_URL" $v.rspamdUrl
  "MAILROOM_CLAMD" $v.clamd
  "MAILROOM_SCANNER_FAILURE" $v.scannerFailure
  "MAILROOM_QUEUE_LIFETIME" $v.queueLifetime
  "MAILROOM_LOG" $v.log
  "MAILROOM_LOG_FORMAT" $v.logFormat
}}
{{- range $k, $val := $typed }}
{{- if $val }}{{ $_ := set $env $k (toString $val) }}{{ end }}
{{- end }}
{{- range $name, $proto := .Values.protocols }}
{{- $key := printf "MAILROOM_%s_LISTEN" (upper $name) }}
{{- if $proto.enabled }}
{{- $_ := set $env $key (printf ":%s" (include "mailroom.containerPort" (dict "root" $ "proto" $proto))) }}
{{- else }}
{{- $_ := set $env $key "off" }}
{{- end }}
{{- end }}
{{- $_ := set $env "MAILROOM_METRICS_LISTEN" (printf ":%v" .Values.metrics.port) }}
{{- if .Values.accounts.existingSecret }}
{{- $_ := set $env "MAILROOM_ACCOUNTS_FILE" (printf "%s/%s" (include "mailroom.accountsDir" .) .Values.accounts.key) }}
{{- end }}
{{- if .Values.relay.existingSecret }}
{{- $_ := set $env "MAILROOM_RELAY_USERNAME_FILE" (printf "%s/%s" (include "mailroom.relayDir" .) .Values.relay.usernameKey) }}
{{- $_ := set $env "MAILROOM_RELAY_PASSWORD_FILE" (printf "%s/%s" (include "mailroom.relayDir" .) .Values.relay.passwordKey) }}
{{- end }}
{{- if include "mailroom.tlsSecret" . }}
{{- $_ := set $env "MAILROOM_TLS_CERT_FILE" (printf "%s/tls.crt" (include "mailroom.tlsDir" .)) }}
{{- $_ := set $env "MAILROOM_TLS_KEY_FILE" (printf "%s/tls.key" (include "mailroom.tlsDir" .)) }}
{{- end }}
{{- if eq .Values.store.type "postgres" }}
{{- $_ := set $env "MAILROOM_STORE_FILE" (printf "%s/%s" (include "mailroom.storeDir" .) .Values.store.postgres.secretKey) }}
{{- $s3 := include "mailroom.s3" . | fromJson }}
{{- if $s3.url }}
{{- $_ := set $env "MAILROOM_BLOB_STORE" $s3.url }}
{{- $_ := set $env "MAILROOM_S3_ACCESS_KEY_ID_FILE" (printf "%s/%s" (include "mailroom.s3Dir" .) $s3.accessKeyIdKey) }}
{{- $_ := set $env "MAILROOM_S3_SECRET_ACCESS_KEY_FILE" (printf "%s/%s" (include "mailroom.s3Dir" .) $s3.secretAccessKeyKey) }}
{{- end }}
{{- end }}
{{- if .Values.proxyProtocol.enabled }}
{{- $_ := set $env "MAILROOM_PROXY_PROTOCOL_FROM" (join "," .Values.proxyProtocol.from) }}
{{- end }}
{{- range $k, $val := .Values.env }}
{{- $_ := set $env $k (toString $val) }}
{{- end }}
{{- toJson $env }}
{{- end }}
