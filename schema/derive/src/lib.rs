//! `#[derive(Schema)]` for `odeon-schema`. Use it through the `odeon_schema::Schema`
//! re-export; the documentation lives there.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, GenericArgument, LitStr, PathArguments, Type, parse_macro_input};

/// Derives `odeon_schema::Schema` and generates the `{Struct}Mut` setter type; the generated
/// code names the schema library `::odeon_schema`.
#[proc_macro_derive(Schema, attributes(schema))]
pub fn derive_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, syn::parse_quote!(::odeon_schema)).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// The same derive as odeon-guest re-exports it (as `Schema`): the generated code names the
/// schema library `::odeon_guest::schema`, so a room crate needs no dependency on odeon-schema.
#[doc(hidden)]
#[proc_macro_derive(GuestSchema, attributes(schema))]
pub fn derive_guest_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input, syn::parse_quote!(::odeon_guest::schema))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// How a synchronised field is encoded.
enum Codec {
    /// By its Rust type (`Field`).
    Auto,
    /// `#[schema(float64)]`.
    Float64,
    /// `#[schema(number)]`.
    Number,
}

struct SyncField<'a> {
    ident: &'a syn::Ident,
    ty: &'a Type,
    vis: &'a syn::Visibility,
    wire_name: String,
    codec: Codec,
    collection: bool,
}

struct SkipField<'a> {
    ident: &'a syn::Ident,
    ty: &'a Type,
    vis: &'a syn::Visibility,
}

#[derive(Clone, Copy)]
enum RenameAll {
    None,
    Camel,
    Pascal,
}

fn expand(input: &DeriveInput, default_crate: syn::Path) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "#[derive(Schema)] does not support generic structs: a schema type has one fixed layout",
        ));
    }
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => &named.named,
            _ => {
                return Err(syn::Error::new(
                    name.span(),
                    "#[derive(Schema)] needs a struct with named fields: the field names are what clients see",
                ));
            }
        },
        _ => {
            return Err(syn::Error::new(
                name.span(),
                "#[derive(Schema)] applies to structs with named fields only",
            ));
        }
    };

    let (rename_all, krate) = struct_attrs(input, default_crate)?;
    let mut synced = Vec::new();
    let mut skipped = Vec::new();
    let mut errors: Option<syn::Error> = None;
    let mut push_error = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for field in fields {
        let Some(ident) = field.ident.as_ref() else { continue };
        match field_attrs(field) {
            Err(e) => push_error(e),
            Ok(attrs) if attrs.skip => skipped.push(SkipField { ident, ty: &field.ty, vis: &field.vis }),
            Ok(attrs) => {
                if let Err(e) = check_type(&field.ty) {
                    push_error(e);
                    continue;
                }
                let wire_name =
                    attrs.rename.unwrap_or_else(|| rename(&ident.unraw().to_string(), rename_all));
                synced.push(SyncField {
                    ident,
                    ty: &field.ty,
                    vis: &field.vis,
                    wire_name,
                    codec: attrs.codec,
                    collection: is_collection(&field.ty),
                });
            }
        }
    }
    // camelCase by default: `player_count` and `playerCount` would both reach clients as one name.
    for (i, field) in synced.iter().enumerate() {
        if let Some(first) = synced[..i].iter().find(|f| f.wire_name == field.wire_name) {
            push_error(syn::Error::new(
                field.ident.span(),
                format!(
                    "`{}` and `{}` both reach clients as `{}`: give one another name with #[schema(rename = \"...\")]",
                    first.ident, field.ident, field.wire_name
                ),
            ));
        }
    }
    if let Some(errors) = errors {
        return Err(errors);
    }
    if synced.len() > 63 {
        return Err(syn::Error::new(
            name.span(),
            format!("a schema struct holds at most 63 synchronised fields, `{name}` has {}", synced.len()),
        ));
    }

    let mut_name = format_ident!("{}Mut", name);
    let vis = &input.vis;
    let wire_names = synced.iter().map(|f| &f.wire_name);

    let describe = synced.iter().map(|f| {
        let ty = f.ty;
        match f.codec {
            Codec::Auto => quote! { <#ty as #krate::Field>::describe(registry) },
            Codec::Float64 => {
                quote! { <#ty as #krate::FieldWith<#krate::__private::Float64>>::describe(registry) }
            }
            Codec::Number => {
                quote! { <#ty as #krate::FieldWith<#krate::__private::Number>>::describe(registry) }
            }
        }
    });

    let views = synced.iter().enumerate().map(|(i, f)| {
        let ty = f.ty;
        let ident = f.ident;
        let index = i as u8;
        let view = match f.codec {
            Codec::Auto => quote! { <#ty as #krate::Field>::view(&self.#ident) },
            Codec::Float64 => {
                quote! { <#ty as #krate::FieldWith<#krate::__private::Float64>>::view(&self.#ident) }
            }
            Codec::Number => {
                quote! { <#ty as #krate::FieldWith<#krate::__private::Number>>::view(&self.#ident) }
            }
        };
        quote! { #index => #view, }
    });

    // Each field's type gets its own bound, so an unsupported type is reported at the field.
    let assertions = synced.iter().map(|f| {
        let ty = f.ty;
        let codec = match f.codec {
            Codec::Auto => None,
            Codec::Float64 => Some(quote! { #krate::__private::Float64 }),
            Codec::Number => Some(quote! { #krate::__private::Number }),
        };
        match codec {
            None => quote_spanned! {ty.span()=>
                {
                    fn field<F: #krate::Field>() {}
                    field::<#ty>();
                }
            },
            Some(codec) => quote_spanned! {ty.span()=>
                {
                    fn field<F: #krate::Field + #krate::FieldWith<C>, C>() {}
                    field::<#ty, #codec>();
                }
            },
        }
    });

    let setters = synced.iter().enumerate().map(|(i, f)| {
        let ident = f.ident;
        let ty = f.ty;
        let fvis = f.vis;
        let index = i as u8;
        let plain = ident.unraw();
        let set = format_ident!("set_{}", plain);
        let set_doc = format!("Sets `{plain}`; the next patch sends it unless the value is the same.");
        // Primitives take their exact type so integer literals infer; strings and child
        // handles take anything that converts (`&str`, a struct value for `Shared<T>`).
        let setter = if converts(ty) {
            quote! {
                #[doc = #set_doc]
                #fvis fn #set(&mut self, value: impl ::core::convert::Into<#ty>) {
                    self.0.__set(#index, |state| &mut state.#ident, value.into());
                }
            }
        } else {
            quote! {
                #[doc = #set_doc]
                #fvis fn #set(&mut self, value: #ty) {
                    self.0.__set(#index, |state| &mut state.#ident, value);
                }
            }
        };
        if f.collection {
            let get = format_ident!("{}_mut", plain);
            let get_doc = format!("Changes `{plain}`; the collection records its own changes.");
            quote! {
                #setter
                #[doc = #get_doc]
                #fvis fn #get(&mut self) -> &mut #ty {
                    &mut self.0.__get_mut().#ident
                }
            }
        } else {
            setter
        }
    });

    let skipped_accessors = skipped.iter().map(|f| {
        let ident = f.ident;
        let ty = f.ty;
        let fvis = f.vis;
        let plain = ident.unraw();
        let get = format_ident!("{}_mut", plain);
        let doc = format!("Changes `{plain}`, which is not synchronised.");
        quote! {
            #[doc = #doc]
            #fvis fn #get(&mut self) -> &mut #ty {
                &mut self.0.__get_mut().#ident
            }
        }
    });

    let mut_doc = format!(
        "Changes a [`{name}`] in the state: assign its fields (`DerefMut`), or call its setters; \
         the next patch sends what changed. Reads go through `Deref`."
    );

    Ok(quote! {
        #[doc = #mut_doc]
        #vis struct #mut_name<'a>(#krate::Tracked<'a, #name>);

        #[automatically_derived]
        impl ::core::ops::Deref for #mut_name<'_> {
            type Target = #name;
            fn deref(&self) -> &#name {
                self.0.__get()
            }
        }

        #[automatically_derived]
        impl ::core::ops::DerefMut for #mut_name<'_> {
            fn deref_mut(&mut self) -> &mut #name {
                self.0.__touch()
            }
        }

        #[automatically_derived]
        impl ::core::fmt::Debug for #mut_name<'_> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::core::concat!(::core::stringify!(#mut_name), "(..)"))
            }
        }

        #[automatically_derived]
        #[allow(dead_code)]
        impl #mut_name<'_> {
            #(#setters)*
            #(#skipped_accessors)*
        }

        #[automatically_derived]
        impl #krate::Schema for #name {
            type Mut<'a> = #mut_name<'a>;

            const __FIELDS: &'static [&'static str] = &[#(#wire_names),*];

            fn __describe(
                registry: &mut #krate::__private::Registry,
            ) -> ::std::vec::Vec<#krate::__private::FieldType> {
                ::std::vec![#(#describe),*]
            }

            fn __field(&self, index: u8) -> #krate::__private::FieldRef<'_> {
                match index {
                    #(#views)*
                    _ => #krate::__private::missing(),
                }
            }

            fn __wrap(tracked: #krate::Tracked<'_, Self>) -> #mut_name<'_> {
                #mut_name(tracked)
            }
        }

        #[automatically_derived]
        impl #krate::Element for #name {
            type Item = #krate::Shared<#name>;
            type ItemMut<'a> = #mut_name<'a>;

            fn item_mut(item: &mut Self::Item) -> #mut_name<'_> {
                item.borrow_mut()
            }

            fn describe(
                registry: &mut #krate::__private::Registry,
            ) -> #krate::__private::ChildType {
                #krate::__private::ChildType::Ref(registry.register::<#name>())
            }

            fn view(item: &Self::Item) -> #krate::__private::ItemRef<'_> {
                #krate::__private::ItemRef::Child(item)
            }

            fn same(a: &Self::Item, b: &Self::Item) -> bool {
                #krate::Shared::ptr_eq(a, b)
            }
        }

        const _: () = {
            #[allow(dead_code)]
            fn assert_fields() {
                #(#assertions)*
            }
        };
    })
}

fn struct_attrs(input: &DeriveInput, default_crate: syn::Path) -> syn::Result<(RenameAll, syn::Path)> {
    // Colyseus's convention: clients see `playerCount` for `player_count`.
    let mut rename_all = RenameAll::Camel;
    let mut krate = default_crate;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("schema")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                let value: LitStr = meta.value()?.parse()?;
                rename_all = match value.value().as_str() {
                    "camelCase" => RenameAll::Camel,
                    "PascalCase" => RenameAll::Pascal,
                    "snake_case" => RenameAll::None,
                    _ => {
                        return Err(syn::Error::new(
                            value.span(),
                            "rename_all takes \"camelCase\", \"PascalCase\" or \"snake_case\"",
                        ));
                    }
                };
                Ok(())
            } else if meta.path.is_ident("crate") {
                let value: LitStr = meta.value()?.parse()?;
                krate = value.parse()?;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown #[schema] attribute on a struct; expected `rename_all = \"camelCase\"` or `crate = \"path\"`",
                ))
            }
        })?;
    }
    Ok((rename_all, krate))
}

struct FieldAttrs {
    skip: bool,
    rename: Option<String>,
    codec: Codec,
}

fn field_attrs(field: &syn::Field) -> syn::Result<FieldAttrs> {
    let mut attrs = FieldAttrs { skip: false, rename: None, codec: Codec::Auto };
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("schema")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                attrs.skip = true;
            } else if meta.path.is_ident("float64") {
                attrs.codec = Codec::Float64;
            } else if meta.path.is_ident("number") {
                attrs.codec = Codec::Number;
            } else if meta.path.is_ident("rename") {
                let value: LitStr = meta.value()?.parse()?;
                attrs.rename = Some(value.value());
            } else {
                return Err(meta.error(
                    "unknown #[schema] attribute on a field; expected `skip`, `float64`, `number` or `rename = \"...\"`",
                ));
            }
            Ok(())
        })?;
    }
    Ok(attrs)
}

fn rename(name: &str, rule: RenameAll) -> String {
    match rule {
        RenameAll::None => name.to_owned(),
        RenameAll::Camel | RenameAll::Pascal => {
            let mut out = String::with_capacity(name.len());
            let mut upper = matches!(rule, RenameAll::Pascal);
            for c in name.chars() {
                if c == '_' {
                    upper = !out.is_empty();
                } else if upper {
                    out.extend(c.to_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// The last path segment of a type and its generic arguments, if it is a plain path.
fn last_segment(ty: &Type) -> Option<(&syn::Ident, Vec<&Type>)> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let args = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((&segment.ident, args))
}

/// Whether the setter takes `impl Into<T>`: `String`, `Shared<T>` and `Option<Shared<T>>`.
fn converts(ty: &Type) -> bool {
    match last_segment(ty) {
        Some((ident, _)) if ident == "String" || ident == "Shared" => true,
        Some((ident, args)) if ident == "Option" => {
            args.first().and_then(|inner| last_segment(inner)).is_some_and(|(inner, _)| inner == "Shared")
        }
        _ => false,
    }
}

fn is_collection(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|(ident, _)| ident == "MapSchema" || ident == "ArraySchema")
}

/// Rejects the field types that are certainly unsupported, with a hint. Anything else is
/// checked by the `Field` bound, whose error names the accepted types.
fn check_type(ty: &Type) -> syn::Result<()> {
    let error = |hint: &str| Err(syn::Error::new(ty.span(), hint.to_owned()));
    match ty {
        Type::Reference(_) => return error("a schema field owns its value: use `String` instead of `&str`"),
        Type::Tuple(_) | Type::Array(_) | Type::Slice(_) => {
            return error(
                "tuples and fixed-size arrays are not schema types: use a child struct or `ArraySchema<T>`",
            );
        }
        _ => {}
    }
    let Some((ident, args)) = last_segment(ty) else { return Ok(()) };
    let name = ident.to_string();
    match name.as_str() {
        "Vec" | "VecDeque" | "LinkedList" => error("use `ArraySchema<T>` for a synchronised list"),
        "HashMap" | "BTreeMap" | "IndexMap" => {
            error("use `MapSchema<V>` (string keys) for a synchronised map")
        }
        "HashSet" | "BTreeSet" => error("sets are not supported: use `MapSchema<bool>` or `ArraySchema<T>`"),
        "usize" | "isize" => error("the schema wire has no pointer-sized integer: use u32, u64, i32 or i64"),
        "u128" | "i128" => error("the schema wire has no 128-bit integer: use u64 or i64"),
        "char" => error("the schema wire has no char type: use `String`"),
        "str" => error("use `String`"),
        "Box" | "Rc" | "Arc" | "RefCell" | "Cell" => {
            error("child structs are held in `odeon_schema::Shared<T>`, which tracks their changes")
        }
        "Option" => match args.first().and_then(|inner| last_segment(inner)) {
            Some((inner, _)) if inner == "Option" => error("`Option<Option<T>>` is not a schema type"),
            Some((inner, _)) if inner == "MapSchema" || inner == "ArraySchema" => error(
                "collections are always present on the client: use the collection itself and `clear()` it",
            ),
            _ => match args.first() {
                Some(inner) => check_type(inner),
                None => Ok(()),
            },
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames() {
        assert_eq!(rename("player_count", RenameAll::Camel), "playerCount");
        assert_eq!(rename("player_count", RenameAll::Pascal), "PlayerCount");
        assert_eq!(rename("_hidden_x", RenameAll::Camel), "hiddenX");
        assert_eq!(rename("hp", RenameAll::None), "hp");
    }

    #[test]
    fn certainly_unsupported_types_are_rejected_with_a_hint() {
        let cases: [(Type, &str); 5] = [
            (syn::parse_quote!(Vec<u8>), "ArraySchema"),
            (syn::parse_quote!(std::collections::HashMap<String, u8>), "MapSchema"),
            (syn::parse_quote!(Option<usize>), "pointer-sized"),
            (syn::parse_quote!(&'static str), "String"),
            (syn::parse_quote!(Option<ArraySchema<u8>>), "always present"),
        ];
        for (ty, hint) in cases {
            let error = check_type(&ty).expect_err("rejected").to_string();
            assert!(error.contains(hint), "{error}");
        }
        for ty in [syn::parse_quote!(Option<Shared<Player>>), syn::parse_quote!(MapSchema<Player>)] {
            assert!(check_type(&ty).is_ok());
        }
    }
}
