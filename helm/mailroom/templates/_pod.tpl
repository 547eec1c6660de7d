{{/*
The pod template shared by the StatefulSet (Maildir, the default) and the Deployment
(store.type=postgres), at indent 0: include it with `nindent 4` under `template:`.
*/}}
{{- define "mailroom.podTemplate" -}}
{{- $tlsSecret := include "mailroom.tlsSecret" . }}
{{- $pg := eq .Values.store.type "postgres" }}
{{- $s3 := include "mailroom.s3" . | fromJson -}}
metadata:
  labels:
    {{- include "mailroom.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Roll the pod when the environment changes.
    checksum/env: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  # Kubernetes would otherwise inject <SERVICE>_PORT_* variables into the environment.
  enableServiceLinks: false
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
    {{- if eq .Values.lowPorts.mode "sysctl" }}
    # Lets the non-root server bind 25, 110, 143, 465, 587, 993, 995, 80 and 443
    # inside its own network namespace; a "safe" sysctl since Kubernetes 1.22.
    sysctls:
      - name: net.ipv4.ip_unprivileged_port_start
        value: "0"
    {{- end }}
  containers:
    - name: mailroom
      image: {{ include "mailroom.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["serve"]
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      envFrom:
        - configMapRef:
            name: {{ include "mailroom.fullname" . }}-env
      {{- with .Values.extraEnv }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        {{- range $name, $proto := .Values.protocols }}
        {{- if $proto.enabled }}
        - name: {{ $name }}
          containerPort: {{ include "mailroom.containerPort" (dict "root" $ "proto" $proto) }}
          protocol: TCP
        {{- end }}
        {{- end }}
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
      startupProbe:
        httpGet:
          path: /healthz
          port: metrics
        {{- toYaml .Values.startupProbe | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: data
          mountPath: /data
        # The root filesystem is read-only; anything needing scratch space gets this.
        - name: tmp
          mountPath: /tmp
        {{- if .Values.accounts.existingSecret }}
        - name: accounts
          mountPath: {{ include "mailroom.accountsDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.relay.existingSecret }}
        - name: relay
          mountPath: {{ include "mailroom.relayDir" . }}
          readOnly: true
        {{- end }}
        {{- if $tlsSecret }}
        # A directory mount (not subPath) so renewals by cert-manager reach the pod.
        - name: tls
          mountPath: {{ include "mailroom.tlsDir" . }}
          readOnly: true
        {{- end }}
        {{- if $pg }}
        # The PostgreSQL URL (it holds a password), read through MAILROOM_STORE_FILE.
        - name: store
          mountPath: {{ include "mailroom.storeDir" . }}
          readOnly: true
        {{- if .Values.store.postgres.caSecret }}
        - name: store-ca
          mountPath: {{ include "mailroom.storeCaDir" . }}
          readOnly: true
        {{- end }}
        {{- if $s3.url }}
        # The bucket's key pair, read through MAILROOM_S3_*_FILE.
        - name: s3
          mountPath: {{ include "mailroom.s3Dir" . }}
          readOnly: true
        {{- end }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  # Secret files are root:fsGroup 0440: readable by the server (group 10001), by
  # nobody else, and not writable even by it.
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if or $pg (not .Values.persistence.enabled) }}
    - name: data
      emptyDir: {}
    {{- end }}
    {{- if .Values.accounts.existingSecret }}
    - name: accounts
      secret:
        secretName: {{ .Values.accounts.existingSecret }}
        defaultMode: 0440
        items:
          - key: {{ .Values.accounts.key }}
            path: {{ .Values.accounts.key }}
    {{- end }}
    {{- if .Values.relay.existingSecret }}
    - name: relay
      secret:
        secretName: {{ .Values.relay.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if $tlsSecret }}
    - name: tls
      secret:
        secretName: {{ $tlsSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if $pg }}
    - name: store
      secret:
        secretName: {{ .Values.store.postgres.existingSecret }}
        defaultMode: 0440
        items:
          - key: {{ .Values.store.postgres.secretKey }}
            path: {{ .Values.store.postgres.secretKey }}
    {{- with .Values.store.postgres.caSecret }}
    # Only the CA certificate: an operator's CA Secret may hold the CA's private key too.
    - name: store-ca
      secret:
        secretName: {{ . }}
        defaultMode: 0440
        items:
          - key: {{ $.Values.store.postgres.caKey }}
            path: {{ $.Values.store.postgres.caKey }}
    {{- end }}
    {{- if $s3.url }}
    # Only the two keys of the pair.
    - name: s3
      secret:
        secretName: {{ $s3.existingSecret }}
        defaultMode: 0440
        items:
          - key: {{ $s3.accessKeyIdKey }}
            path: {{ $s3.accessKeyIdKey }}
          - key: {{ $s3.secretAccessKeyKey }}
            path: {{ $s3.secretAccessKeyKey }}
    {{- end }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if $pg }}
  # Replicas on different nodes where the scheduler can: losing one node leaves the others.
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "mailroom.selectorLabels" . | nindent 16 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
