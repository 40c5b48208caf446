{{/* The chart name, or nameOverride. */}}
{{- define "portvakt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The name of every namespaced object: fullnameOverride, or <release>-<name> (just <release> when it already
contains the name). Truncated to 63 characters (a DNS label).
*/}}
{{- define "portvakt.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The name of cluster-scoped objects (ClusterRole, ClusterRoleBinding): <namespace>-<fullname>, so the same
release name in two namespaces does not collide.
*/}}
{{- define "portvakt.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "portvakt.fullname" .) -}}
{{- end -}}

{{- define "portvakt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portvakt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portvakt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portvakt.labels" -}}
helm.sh/chart: {{ include "portvakt.chart" . }}
{{ include "portvakt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "portvakt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portvakt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: the existing ServiceAccount the pod runs as" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the admin key file (file mode). */}}
{{- define "portvakt.adminKeySecret" -}}
{{- default (printf "%s-digdir-admin" (include "portvakt.fullname" .)) .Values.digdir.adminKey.existingSecret -}}
{{- end -}}

{{/* Where the admin key files are mounted in the pod. */}}
{{- define "portvakt.adminKeyDir" -}}/var/run/secrets/portvakt/digdir{{- end -}}

{{/*
Checks the values a platform engineer must give and the combinations that cannot work, and fails once with
every problem listed (so one `helm template` run names all of them). Missing values go through `required`, so
`helm lint` without values reports them without failing.
*/}}
{{- define "portvakt.validate" -}}
{{- $v := .Values -}}
{{- $missing := list -}}
{{- if not $v.clusterName -}}
{{- $missing = append $missing "clusterName: the cluster name digdirator used (registrations are named <cluster>:<namespace>:<name>; a different name registers every client again)" -}}
{{- end -}}
{{- $digdir := or $v.controllers.idporten $v.controllers.maskinporten -}}
{{- if $digdir -}}
{{- if not $v.digdir.environment -}}
{{- $missing = append $missing "digdir.environment: test or prod (whose Digdir URLs are used)" -}}
{{- end -}}
{{- if not $v.digdir.adminClientId -}}
{{- $missing = append $missing "digdir.adminClientId: the client_id of your organisation's admin client at Digdir" -}}
{{- end -}}
{{- if not $v.clientDefaults.name -}}
{{- $missing = append $missing "clientDefaults.name: the client_name registered for resources whose spec has none (your organisation's name)" -}}
{{- end -}}
{{- if not $v.clientDefaults.uri -}}
{{- $missing = append $missing "clientDefaults.uri: the client_uri (and post-logout redirect URI) for resources whose spec has none (your organisation's web site)" -}}
{{- end -}}
{{- if and $v.controllers.maskinporten (not $v.clientDefaults.maskinportenScope) -}}
{{- $missing = append $missing "clientDefaults.maskinportenScope: the scope registered on a MaskinportenClient that consumes none (Digdir refuses clients without scopes), needed while controllers.maskinporten is true" -}}
{{- end -}}
{{- end -}}
{{- $entra := $v.entra -}}
{{- if $entra.enabled -}}
{{- if not $entra.tenantId -}}
{{- $missing = append $missing "entra.tenantId: the Entra tenant's id (GUID), needed with entra.enabled" -}}
{{- end -}}
{{- if not $entra.clientId -}}
{{- $missing = append $missing "entra.clientId: the operator's app in Entra (under Application.ReadWrite.OwnedBy the app azurerator ran as), needed with entra.enabled" -}}
{{- end -}}
{{- if not $entra.permissionGrantResourceId -}}
{{- $missing = append $missing "entra.permissionGrantResourceId: the object id of Microsoft Graph's service principal in the tenant, needed with entra.enabled" -}}
{{- end -}}
{{- if and (eq $entra.credential.source "federatedTokenFile") (not $entra.credential.tokenFile) -}}
{{- $missing = append $missing "entra.credential.tokenFile: the path of the projected federated token, needed with entra.credential.source=federatedTokenFile" -}}
{{- end -}}
{{- end -}}
{{- $key := $v.digdir.adminKey -}}
{{- if and (eq $key.source "kms") (not $key.kmsKeyPath) -}}
{{- $missing = append $missing "digdir.adminKey.kmsKeyPath: the Cloud KMS key version (projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N), needed with digdir.adminKey.source=kms" -}}
{{- end -}}
{{- if and (eq $key.naming "kid") (not $key.kid) -}}
{{- $missing = append $missing "digdir.adminKey.kid: the kid of the key registered on the admin client, needed with digdir.adminKey.naming=kid" -}}
{{- end -}}
{{- $chain := $key.certificateChain -}}
{{- if and (eq $key.naming "x5c") (eq $key.source "kms") (not (or $chain.pem $chain.existingSecret $chain.existingConfigMap)) -}}
{{- $missing = append $missing "digdir.adminKey.certificateChain.pem (or .existingSecret or .existingConfigMap): the business certificate chain of the KMS key, needed with digdir.adminKey.source=kms and naming=x5c" -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.apiServer.cidrs) -}}
{{- $missing = append $missing "networkPolicy.apiServer.cidrs: the Kubernetes API server's addresses (kubectl get endpoints kubernetes -n default), needed with networkPolicy.enabled" -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.providers.cidrs) -}}
{{- $missing = append $missing "networkPolicy.providers.cidrs: the addresses of Digdir's API, Maskinporten and ID-porten (and Cloud KMS in kms mode), needed with networkPolicy.enabled" -}}
{{- end -}}
{{- if $missing -}}
{{- $_ := required (printf "portvakt: these values are required:\n  - %s" (join "\n  - " $missing)) "" -}}
{{- end -}}
{{- $conflicts := list -}}
{{- if gt (len (compact (list $chain.pem $chain.existingSecret $chain.existingConfigMap))) 1 -}}
{{- $conflicts = append $conflicts "digdir.adminKey.certificateChain: set only one of pem, existingSecret and existingConfigMap" -}}
{{- end -}}
{{- if and (eq $key.naming "kid") (or $chain.pem $chain.existingSecret $chain.existingConfigMap) -}}
{{- $conflicts = append $conflicts "digdir.adminKey.certificateChain is set but naming is kid: the grant names its key by one of x5c and kid" -}}
{{- end -}}
{{- if and (eq $key.source "kms") $key.existingSecret -}}
{{- $conflicts = append $conflicts "digdir.adminKey.existingSecret is set but source is kms: the key stays in KMS (put the chain in certificateChain)" -}}
{{- end -}}
{{- if and (eq $key.source "file") $key.kmsKeyPath -}}
{{- $conflicts = append $conflicts "digdir.adminKey.kmsKeyPath is set but source is file: set source: kms to sign with KMS" -}}
{{- end -}}
{{- if $conflicts -}}
{{- fail (printf "portvakt: these values do not fit together:\n  - %s" (join "\n  - " $conflicts)) -}}
{{- end -}}
{{- end -}}
