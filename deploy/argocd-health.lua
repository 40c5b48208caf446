-- Argo CD health check for portvakt's resources: nais.io IDPortenClient, MaskinportenClient and
-- AzureAdApplication (resource.customizations.health.nais.io_<Kind> in argocd-cm; see the README).
--
-- It reads what portvakt writes on every status write, and judges as kstatus (Flux) does:
--   Progressing  a generation portvakt has not synchronised yet, Reconciling=True (a retry or a
--                wait is pending), or not Ready yet
--   Degraded     Stalled=True: nothing happens until someone changes the spec, a setting or a
--                Secret in the way (the message says what)
--   Healthy      Ready=True for the current generation (degraded conditions, such as consumed
--                scopes without access, are named in the message)
-- Lua 5.1 without the string library (Argo CD opens only base, table and a safe os for scripts
-- from argocd-cm).
local hs = {}

local function condition(name)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == name then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for portvakt to synchronise the resource"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for portvakt to synchronise generation " .. generation
  return hs
end

local stalled = condition("Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end

local reconciling = condition("Reconciling")
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = reconciling.message
  return hs
end

local ready = condition("Ready")
if is_true(ready) and (ready.observedGeneration == nil or generation == nil or ready.observedGeneration == generation) then
  hs.status = "Healthy"
  hs.message = ready.message
  for _, name in ipairs({ "InvalidConsumedScopes", "InvalidExposedScopesConsumers", "PreAuthorizedAppsNotFound", "KeysDropped" }) do
    local degraded = condition(name)
    if is_true(degraded) and degraded.message ~= nil then
      if hs.message == nil or hs.message == "" then
        hs.message = degraded.message
      else
        hs.message = hs.message .. "; " .. degraded.message
      end
    end
  end
  return hs
end

hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "Waiting for portvakt to synchronise the resource"
end
return hs
