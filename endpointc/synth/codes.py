"""The built-in code mix: conditions a Finnish biobank participant typically collects.

Hand-written from public ICD-10/ICD-9/ICD-8, ICPC-2, ATC, NOMESCO and Kela knowledge (no
registry data went into it). Each condition carries its code in every code system it
appears in, so a chronic disease follows its patient through the ICD revisions, plus the
drugs, reimbursement code, operations and cancer-registry coding that come with it.
Frequencies are rough lifetime risks chosen so that a generated cohort *looks* like
FinnGen (hypertension, dental caries and colds everywhere; pregnancies for women;
prostate disease for men), not estimates of anything.

Table columns (` | ` separated, `-` = none, several codes = the alternatives a patient
may get, one chosen per patient and kept on every visit):

    key | ICD-10 | ICD-9 (Finnish, letter suffix) | ICD-8 | ICPC-2 | sex | onset ages |
    lifetime risk | visits per year after onset (0 = one acute episode) |
    inpatient/outpatient/primary-care weights | ATC | Kela code | extras

Extras: `canc=TOPO/MORPH` cancer registry coding; `ex` injuries carry an external cause
(EX1) row; `nom=`, `hl=` operation codes (NOMESCO, Finnish Hospital League); `hp` heart
procedures; `fatal=W` weight as an underlying cause of death; `drug=chronic|acute` whether
the ATC is bought every three months or once per episode; `mop=` dental procedures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Condition",
    "CONDITIONS",
    "EXTERNAL_CAUSES",
    "IMMEDIATE_CAUSES",
    "GENERIC_OPERATIONS",
    "HEART_PROCEDURES",
    "PRIMARY_PROCEDURES",
    "FILLER_MAIN",
    "vnrs_for",
    "SEX_SPECIFIC",
    "sex_of_code",
]

_TABLE = """
HTN      | I10 I109            | 4019X 4010X | 40199 40100 | K86 K87 | - | 30-90 | 0.38 | 1.2 | 1/6/12 | C09AA05 C09CA01 C08CA01 C07AB02 C03AA03 | 205 | drug=chronic fatal=1
HTN_HEART| I119 I110           | 4029X       | 40299       | K87     | - | 45-90 | 0.04 | 0.5 | 2/5/5  | C09AA05 C03AA03 | 205 | drug=chronic fatal=2
IHD      | I251 I259 I209      | 4149X 4139X | 41299 41399 | K74 K76 | - | 45-90 | 0.14 | 0.8 | 3/6/6  | B01AC06 C10AA05 C10AA01 C07AB07 C01DA02 | 206 | drug=chronic hp fatal=12 nom=FNG05 FNF10 hl=3080
MI       | I219 I210 I214 I252 | 4109X 4100X 4100B | 41099 41090 | K75 | - | 45-90 | 0.06 | 0.3 | 12/4/2 | B01AC06 B01AC04 C10AA05 C07AB07 | 206 | drug=chronic hp fatal=10 nom=FNG05 FNA00 hl=3080
AF       | I48 I480 I489       | 4273A       | 42792       | K78     | - | 50-90 | 0.10 | 0.8 | 3/6/5  | B01AA03 B01AF01 B01AF02 C07AB07 | 207 | drug=chronic hp fatal=2 nom=TFP00
HF       | I500 I509           | 4280X 4281X | 42799 42700 | K77     | - | 55-95 | 0.06 | 0.9 | 8/5/4  | C03CA01 C03DA01 C07AB07 | 201 | drug=chronic fatal=8
STROKE   | I639 I634 I64       | 4349X 4340X | 43399 43499 | K90     | - | 50-95 | 0.06 | 0.4 | 12/4/2 | B01AC04 B01AC06 C10AA05 | - | drug=chronic fatal=8
ICH      | I619 I609           | 4319X 4309X | 43199 43099 | K90     | - | 40-95 | 0.012| 0.2 | 15/3/1 | - | - | fatal=8
TIA      | G459 G458           | 4359X       | 43599       | K89     | - | 50-90 | 0.03 | 0.1 | 8/5/3  | B01AC06 | - | drug=chronic
PAD      | I702 I709           | 4402X       | 44000       | K92     | - | 55-90 | 0.03 | 0.4 | 4/6/3  | B01AC06 C10AA05 | - | drug=chronic fatal=2
AAA      | I714 I719           | 4414X       | 44199       | K99     | - | 60-90 | 0.01 | 0.3 | 6/6/1  | - | - | fatal=4
VALVE    | I350 I340           | 4241X 4240X | 42400 42499 | K83     | - | 60-95 | 0.03 | 0.5 | 5/7/2  | - | - | fatal=2 hp
VTE      | I269 I802 I803      | 4151X 4519X | 45000 45199 | K93 K94 | - | 30-90 | 0.03 | 0.2 | 8/5/3  | B01AF01 B01AB05 B01AA03 | - | drug=acute fatal=2
VARICOSE | I839 I830           | 4549X       | 45499       | K95     | - | 25-80 | 0.05 | 0.2 | 2/5/4  | - | - | nom=PHD10
HEMORRH  | I849 K648           | 4559X       | 45599       | K96     | - | 25-80 | 0.06 | 0.1 | 1/4/6  | - | - | nom=JHB00
DM2      | E119 E118 E11       | 2500B 2508B | 25000 25009 | T90     | - | 35-90 | 0.13 | 1.5 | 1/5/12 | A10BA02 A10BH01 A10BJ02 A10AE04 | 103 215 | drug=chronic fatal=3
DM1      | E109 E101 E10       | 2500A 2501A | 25001 25000 | T89     | - | 2-40  | 0.008| 2.0 | 3/10/4 | A10AB05 A10AE04 | 103 | drug=chronic fatal=2
HYPOTHY  | E039 E038           | 2449X       | 24499       | T86     | - | 25-85 | 0.08 | 0.5 | 0/3/6  | H03AA01 | 104 | drug=chronic
LIPID    | E780 E785           | 2720A 2724A | 27200       | T93     | - | 35-85 | 0.18 | 0.4 | 0/2/8  | C10AA05 C10AA01 C10AA07 | - | drug=chronic
OBESITY  | E669 E660           | 2780A       | 27700       | T82     | - | 18-80 | 0.08 | 0.3 | 1/3/6  | - | - |
IRONANEM | D509 D500           | 2809X       | 28099       | B80     | - | 15-90 | 0.06 | 0.2 | 1/3/6  | B03AA07 | - | drug=acute
B12ANEM  | D519 D510           | 2810A       | 28100       | B81     | - | 50-90 | 0.02 | 0.4 | 1/3/6  | B03BA01 | - | drug=chronic
VITD     | E559                | 2689X       | 26599       | T91     | - | 20-90 | 0.03 | 0.1 | 0/2/6  | A11CC05 | - | drug=chronic
ASTHMA   | J459 J450 J451      | 4939X 4930A | 49300 49399 | R96     | - | 2-80  | 0.12 | 0.6 | 1/4/8  | R03AK06 R03BA02 R03AC02 R03DC03 | 203 | drug=chronic fatal=1
COPD     | J449 J441 J448      | 4912X 4912B | 49100 49200 | R95     | - | 45-90 | 0.06 | 0.8 | 5/5/6  | R03BB04 R03AC02 R03AK06 | 203 | drug=chronic fatal=5
PNEUMON  | J189 J159 J181      | 4860X 4859X | 48699 48599 | R81     | - | 0-99  | 0.18 | 0   | 8/3/6  | J01CA04 J01FA10 | - | drug=acute fatal=3
URTI     | J069 J00 J029       | 4659X 4600X | 46599 46000 | R74     | - | 0-90  | 0.90 | 0.5 | 0/1/30 | - | - |
SINUSIT  | J019 J329           | 4619X 4739X | 46199 47399 | R75     | - | 5-85  | 0.35 | 0.1 | 0/2/20 | J01CA04 J01FA09 | - | drug=acute
TONSIL   | J039 J350           | 4639X 4740A | 46300 50000 | R76     | - | 2-60  | 0.30 | 0.1 | 1/2/20 | J01CE02 | - | drug=acute nom=EMB10 hl=2611
BRONCH   | J209 J40            | 4660A 4900X | 46600 49000 | R78     | - | 0-90  | 0.30 | 0   | 0/1/20 | J01AA02 J01CA04 | - | drug=acute
INFLUENZA| J111 J101           | 4871X       | 47099 47000 | R80     | - | 0-95  | 0.20 | 0   | 1/2/20 | J05AH02 | - | drug=acute
OTITIS   | H669 H650           | 3829X 3810A | 38199 38100 | H71     | - | 0-15  | 0.40 | 0.2 | 0/2/20 | J01CA04 | - | drug=acute nom=DCA20 hl=2011
GASTROENT| A099 A084           | 0090X 0098X | 00999 00900 | D73     | - | 0-95  | 0.30 | 0   | 1/2/12 | - | - |
ZOSTER   | B029 B028           | 0539X       | 05399       | S70     | - | 30-95 | 0.15 | 0   | 0/2/15 | J05AB11 | - | drug=acute
CELLULIT | L039 L031 A46       | 6829X 0350X | 68299 03599 | S76     | - | 20-95 | 0.10 | 0   | 4/3/10 | J01DB01 J01CF02 | - | drug=acute
UTI      | N390 N300           | 5990X 5950A | 59900 59500 | U71     | - | 15-95 | 0.40 | 0.1 | 1/2/15 | J01XE01 J01EA01 J01DB01 | - | drug=acute
SEPSIS   | A419 A410           | 0389X       | 03899 03800 | A78     | - | 50-99 | 0.03 | 0   | 20/1/0 | J01DD04 | - | drug=acute fatal=6
DEPRESS  | F329 F321 F331 F334 | 2961E 2968E 3004A | 29610 30040 | P76 | - | 15-85 | 0.18 | 0.8 | 1/6/8 | N06AB04 N06AB10 N06AX11 N06AX16 | - | drug=chronic
ANXIETY  | F419 F411 F410      | 3000A 3009X | 30000 30099 | P74     | - | 15-80 | 0.14 | 0.6 | 1/5/8  | N05BA04 N05BA12 N06AB10 | - | drug=chronic
INSOMNIA | G470 F510           | 7805A 3074A | 30640       | P06     | - | 20-95 | 0.12 | 0.3 | 0/2/8  | N05CF01 N05CH01 | - | drug=chronic
SCHIZO   | F209 F200 F25       | 2959X 2953A | 29599 29530 | P72     | - | 16-50 | 0.012| 3.0 | 10/10/3| N05AH03 N05AH04 N05AX08 | 112 | drug=chronic
BIPOLAR  | F319 F313           | 2964A 2962A | 29610 29619 | P73     | - | 16-60 | 0.015| 2.0 | 6/10/3 | N05AN01 N03AG01 N05AH04 | 112 | drug=chronic
ALCOHOL  | F102 F101 F100      | 3039X 3050A | 30399 30300 | P15 P16 | - | 18-80 | 0.06 | 0.8 | 8/6/4  | N07BB04 N07BB03 | - | drug=chronic fatal=4
ALCLIVER | K703 K709 K746      | 5712A 5715X | 57100 57109 | D97     | - | 35-85 | 0.012| 1.0 | 10/6/3 | - | - | fatal=8
SMOKING  | F172 Z720           | 3051X       | 30400       | P17     | - | 15-80 | 0.10 | 0.2 | 0/2/6  | N07BA03 N07BA01 | - | drug=acute
DEMENTIA | G309 F009 F03       | 3310A 2900A | 29010 29000 | P70     | - | 65-99 | 0.09 | 1.0 | 6/6/6  | N06DA02 N06DX01 | - | drug=chronic fatal=10
PARKINS  | G20                 | 3320X       | 34200       | N87     | - | 55-95 | 0.02 | 1.0 | 2/8/3  | N04BA02 N04BC05 | 110 | drug=chronic fatal=3
EPILEPSY | G409 G402           | 3459X 3451X | 34599 34590 | N88     | - | 0-90  | 0.02 | 1.0 | 4/8/3  | N03AX14 N03AF01 N03AX09 | 111 | drug=chronic fatal=1
MIGRAINE | G439 G430           | 3469X       | 34699       | N89     | - | 10-60 | 0.12 | 0.3 | 0/3/8  | N02CC01 N02CC03 | - | drug=chronic
MS       | G35                 | 3409X       | 34099       | N86     | - | 20-55 | 0.003| 2.0 | 3/12/2 | L03AB07 L04AA27 | 109 | drug=chronic
CARPAL   | G560                | 3540A       | 35700       | N93     | - | 30-80 | 0.04 | 0.2 | 1/5/3  | - | - | nom=ACC51 hl=0520
SLEEPAPN | G473                | 7802A 3472A | 34799       | P06     | - | 35-85 | 0.06 | 0.6 | 1/8/3  | - | - |
BACKPAIN | M545 M544 M511      | 7245X 7242X 7221A | 72899 72510 | L03 L86 | - | 20-90 | 0.45 | 0.3 | 1/4/12 | M01AE01 N02BE01 N02AX02 | - | drug=acute nom=ABC26
NECKPAIN | M542 M530           | 7231X       | 72810       | L01 L83 | - | 20-85 | 0.25 | 0.2 | 0/3/12 | M01AE01 N02BE01 | - | drug=acute
KNEEOA   | M179 M171           | 7153X 7151C | 71300 71309 | L90     | - | 45-90 | 0.15 | 0.4 | 2/5/8  | N02BE01 M01AE02 | - | drug=acute nom=NGB40 hl=8473
HIPOA    | M169 M161           | 7151B 7152B | 71310       | L89     | - | 50-90 | 0.10 | 0.4 | 3/5/6  | N02BE01 M01AH01 | - | drug=acute nom=NFB40 hl=8452
RA       | M059 M069 M060      | 7140A 7141A | 71200 71209 | L88     | - | 25-80 | 0.02 | 1.2 | 2/10/4 | L04AX03 P01BA02 A07EC01 | 202 | drug=chronic fatal=1
GOUT     | M109 M100           | 2740A       | 27400       | T92     | - | 40-90 | 0.04 | 0.3 | 1/3/6  | M04AA01 | - | drug=chronic
OSTEOPOR | M819 M810           | 7330A       | 72310       | L95     | - | 50-95 | 0.07 | 0.3 | 1/5/5  | M05BA04 M05BB03 | - | drug=chronic
SHOULDER | M751 M754           | 7261A       | 71700       | L92     | - | 30-80 | 0.12 | 0.3 | 1/5/8  | M01AE01 | - | drug=acute nom=NBL10
CATARACT | H251 H259 H269      | 3661A 3669X | 37400 37499 | F92     | - | 55-95 | 0.20 | 0.3 | 1/8/2  | - | - | nom=CJE20 hl=1412
GLAUCOMA | H401 H409           | 3651A 3659X | 37501 37599 | F93     | - | 45-95 | 0.05 | 0.6 | 0/8/2  | S01EE01 S01ED01 | 113 | drug=chronic
CONJUNCT | H109 H101           | 3723X       | 36000       | F70     | - | 0-90  | 0.20 | 0   | 0/1/15 | S01AA01 | - | drug=acute
ALLERGY  | J301 J304 T784      | 4770A 9953X | 50700 99530 | R97 A92 | - | 3-70  | 0.20 | 0.2 | 0/2/10 | R06AE07 R06AX27 R01AD09 | - | drug=acute
ATOPDERM | L209 L208           | 6918A       | 69100       | S87     | - | 0-60  | 0.12 | 0.3 | 0/3/10 | D07AB02 D11AH01 | - | drug=acute
PSORIAS  | L400 L409           | 6961X       | 69600       | S91     | - | 15-80 | 0.04 | 0.5 | 1/6/6  | D05AX02 D07AC01 L04AX03 | - | drug=chronic
ACNE     | L700                | 7061A       | 70600       | S96     | - | 12-30 | 0.10 | 0.3 | 0/3/8  | D10BA01 J01AA02 | - | drug=acute
CARIES   | K021 K029 K040      | 5210A 5220A | 52100 52200 | D82     | - | 3-95  | 0.85 | 1.5 | 0/0/40 | - | - | mop=SAA01 SFA20 SFA10 EB1AA
PERIODON | K053 K051           | 5234X 5231X | 52340       | D82     | - | 25-95 | 0.35 | 0.8 | 0/0/40 | - | - | mop=SFA20 SFA10
GERD     | K210 K219 K20       | 5301X 5300X | 53099 53000 | D84     | - | 25-90 | 0.12 | 0.3 | 1/4/8  | A02BC01 A02BC02 | - | drug=chronic
PEPTIC   | K259 K269 K297      | 5319X 5329X | 53199 53299 | D86     | - | 25-90 | 0.05 | 0.2 | 4/4/5  | A02BC01 | - | drug=acute fatal=1
IBS      | K589 K580           | 5641A       | 56410       | D93     | - | 15-70 | 0.07 | 0.2 | 0/4/8  | A03AX13 | - | drug=acute
CROHN    | K509 K500 K501      | 5559X 5550A | 56300 56301 | D94     | - | 15-60 | 0.003| 2.0 | 4/12/2 | A07EC02 H02AB06 L04AX01 | 208 | drug=chronic
UC       | K519 K513           | 5569X 5561A | 56310 56319 | D94     | - | 15-70 | 0.006| 1.5 | 4/12/2 | A07EC02 H02AB06 | 208 | drug=chronic
CELIAC   | K900                | 5790A       | 26900       | D99     | - | 5-70  | 0.01 | 0.3 | 1/6/4  | - | - |
APPENDIC | K359 K358           | 5409X 5409A | 54099 54000 | D88     | - | 5-60  | 0.07 | 0   | 20/1/1 | J01DD04 | - | drug=acute nom=JEA01 JEA00 hl=4510
GALLSTONE| K802 K800 K810      | 5749X 5740A | 57499 57400 | D98     | - | 30-85 | 0.10 | 0.1 | 10/6/2 | - | - | nom=JKA21 hl=4711
PANCREAT | K859 K860           | 5770A 5771A | 57700 57709 | D99     | - | 30-80 | 0.02 | 0.1 | 15/4/1 | - | - | fatal=2
HERNIA   | K409 K429           | 5509X 5531X | 55099 55199 | D89     | - | 20-85 | 0.05 | 0   | 8/6/2  | - | - | nom=JAB30 hl=4900
CKD      | N189 N183 N184      | 5859X 5829X | 59299 58299 | U99     | - | 50-95 | 0.04 | 1.0 | 3/8/4  | - | - | fatal=3
KIDSTONE | N200 N201 N23       | 5920X 7880A | 59200 59400 | U95     | - | 20-80 | 0.06 | 0.1 | 5/6/4  | - | - | nom=KAE10
BPH      | N40                 | 6009X       | 60099 60000 | Y85     | male | 50-95 | 0.25 | 0.5 | 1/6/5 | G04CA02 G04CB01 | - | drug=chronic nom=KED22 hl=6201
ED       | N484 F522           | 6078A 3027A | 60799       | Y07     | male | 40-85 | 0.10 | 0.1 | 0/2/5 | G04BE03 | - | drug=acute
MALEINF  | N469                | 6069X       | 60699       | Y10     | male | 25-50 | 0.02 | 0.3 | 0/6/2 | - | - |
PROSTCA  | C61                 | 1859X       | 18599       | Y77     | male | 55-95 | 0.12 | 1.2 | 3/10/3 | L02AE02 L02BB03 | 115 | drug=chronic fatal=8 canc=C619/8140 nom=KEC01 hl=6401
BREASTCA | C509 C504 C508 C5041| 1749X 1744X | 17499 17400 | X76     | female | 35-90 | 0.11 | 1.2 | 3/10/3 | L02BG04 L02BA01 L02BG03 | 115 | drug=chronic fatal=6 canc=C509/8500 nom=HAB40 HAC20 hl=1711
BREASTCAM| C509                | 1749X       | 17499       | Y78     | male | 55-90 | 0.0008| 1.0 | 3/10/3 | L02BA01 | 115 | drug=chronic fatal=3 canc=C509/8500 nom=HAB40
COLONCA  | C189 C187 C20       | 1539X 1540X | 15399 15400 | D75     | - | 45-95 | 0.04 | 1.0 | 6/10/2 | L01BC06 | 115 | drug=acute fatal=10 canc=C189/8140 nom=JFB30 hl=4621
LUNGCA   | C349 C341           | 1629X       | 16299 16290 | R84     | - | 50-90 | 0.03 | 1.0 | 8/10/2 | L01XC18 | 115 | drug=acute fatal=20 canc=C349/8070 nom=GDC00
MELANOMA | C439 C435           | 1729X       | 17299       | S77     | - | 30-90 | 0.02 | 0.5 | 2/8/2  | - | 115 | fatal=3 canc=C445/8720 nom=QBE10
SKINCA   | C449 C443           | 1739X       | 17399       | S77     | - | 50-95 | 0.06 | 0.3 | 1/6/3  | - | - | canc=C443/8090 nom=QBE10
LYMPHOMA | C833 C859 C819      | 2020X 2010X | 20299 20199 | B72     | - | 20-90 | 0.01 | 1.5 | 8/10/1 | L01XC02 | 115 | drug=acute fatal=6 canc=C779/9680
LEUKAEM  | C911 C920           | 2041A 2050A | 20410 20500 | B73     | - | 0-90  | 0.008| 1.5 | 10/10/1| L01XE01 | 115 | drug=chronic fatal=8 canc=C421/9823
BLADDERCA| C679                | 1889X       | 18899       | U76     | - | 50-95 | 0.015| 1.0 | 4/10/2 | - | 115 | fatal=4 canc=C679/8120 nom=KCD32
PANCCA   | C259 C250           | 1579X       | 15799       | D76     | - | 50-95 | 0.012| 0.8 | 8/8/2  | - | 115 | fatal=25 canc=C259/8500
STOMACHCA| C169                | 1519X       | 15199       | D74     | - | 50-95 | 0.008| 0.8 | 8/8/2  | - | 115 | fatal=15 canc=C169/8140
KIDNEYCA | C64                 | 1890A       | 18900       | U75     | - | 45-90 | 0.01 | 0.8 | 6/8/2  | - | 115 | fatal=6 canc=C649/8312 nom=KAC00
THYROIDCA| C73                 | 1939X       | 19399       | T71     | - | 20-80 | 0.006| 0.6 | 4/8/2  | H03AA01 | 115 | drug=chronic fatal=1 canc=C739/8260 nom=BAA60
UTERUSCA | C549 C541           | 1820X       | 18200       | X77     | female | 50-90 | 0.02 | 0.8 | 4/8/2 | - | 115 | fatal=4 canc=C541/8380 nom=LCD10
OVARYCA  | C56                 | 1830X       | 18300       | X77     | female | 45-90 | 0.012| 1.0 | 6/8/2 | L01XA02 | 115 | drug=acute fatal=12 canc=C569/8441
CERVIXCA | C539                | 1809X       | 18099       | X75     | female | 25-80 | 0.005| 0.8 | 4/8/2 | - | 115 | fatal=4 canc=C539/8070
DELIVERY | O800 O801 O809 O700 | 6500B 6500A | 65000 65099 | W90     | female | 18-44 | 0.75 | 0 | 30/2/2 | - | - | nom=MAA00 hl=7510
CSECTION | O829 O821           | 6691A       | 66920       | W92     | female | 20-44 | 0.15 | 0 | 30/1/1 | - | - | nom=MCA10 hl=7420
MISCARR  | O039 O021           | 6349X 6320A | 64399 64500 | W82     | female | 18-44 | 0.15 | 0 | 8/6/2 | - | - | nom=LCH00
PREECLAM | O149 O140           | 6424E 6424F | 63703 63709 | W81     | female | 18-44 | 0.04 | 0 | 15/6/1 | - | - |
GESTDM   | O244 O249           | 6488A       | 63400       | W85     | female | 18-44 | 0.08 | 0 | 4/8/3 | A10AB05 | - | drug=acute
CONTRACEP| Z304 Z301           | V252A V251A | -           | W11 W14 | female | 16-45 | 0.50 | 0.5 | 0/1/6 | G03AA07 G03AC03 | - | drug=chronic
MENOPAUSE| N951 N959           | 6272X 6271X | 62700       | X11     | female | 45-60 | 0.30 | 0.3 | 0/3/6 | G03CA03 G03FB05 | - | drug=chronic
ENDOMETR | N809 N800           | 6179X 6170A | 62530       | X99     | female | 20-50 | 0.04 | 0.4 | 3/6/2 | G03AC09 | - | drug=chronic nom=LAF10
FEMINF   | N979 N970           | 6289X       | 62899       | W15     | female | 22-45 | 0.05 | 0.5 | 1/8/1 | G03GA05 | - | drug=acute
CERVDYSPL| N871 N879           | 6221A 6222A | 62110       | X86     | female | 20-60 | 0.04 | 0.3 | 1/8/2 | - | - | nom=LDC10
UTPROLAP | N813 N811           | 6184A       | 62300       | X87     | female | 45-90 | 0.05 | 0.2 | 6/5/2 | - | - | nom=LEF13
FRACWRIST| S525 S526           | 8130A 8134A | 81300 81310 | L72     | - | 5-95  | 0.10 | 0   | 4/6/2  | N02BE01 | - | ex drug=acute nom=NCJ62 hl=8160
FRACHIP  | S7200 S7210         | 8200A 8201A | 82000 82010 | L75     | - | 60-99 | 0.05 | 0   | 20/3/1 | B01AB05 | - | ex drug=acute fatal=3 nom=NFJ64 NFB30 hl=8211
FRACANKLE| S826 S828           | 8240A 8241A | 82400 82410 | L73     | - | 10-90 | 0.06 | 0   | 6/6/2  | N02BE01 | - | ex drug=acute nom=NHJ60
SPRAIN   | S934 S934           | 8450A       | 84500       | L77     | - | 5-80  | 0.20 | 0   | 0/4/8  | M01AE01 | - | ex drug=acute
CONCUSS  | S060 S069           | 8500A 8541A | 85000 85099 | N79     | - | 0-95  | 0.08 | 0   | 8/6/3  | - | - | ex
WOUND    | S610 S019 S018      | 8830A 8730A | 88300 87300 | S18     | - | 0-95  | 0.30 | 0   | 0/5/8  | - | - | ex
POISON   | T424 T400 T510      | 9694A 9650A | 97700 98000 | A84     | - | 15-80 | 0.02 | 0   | 15/4/1 | - | - | ex fatal=2
COMPLIC  | T814 T845 T888      | 9985X 9966A | 99890 99670 | A87     | - | 20-95 | 0.04 | 0   | 10/6/1 | - | - | ex
CHECKUP  | Z000 Z003 Z017      | -           | -           | A98 A97 | - | 0-99  | 0.90 | 0.8 | 0/1/40 | - | - |
PAIN     | R104 R074 R51 R05   | 7890A 7865A 7840A 7862A | 78500 78250 79100 78330 | D01 A11 N01 R05 | - | 0-99 | 0.85 | 0.4 | 2/4/20 | N02BE01 M01AE01 | - | drug=acute
FATIGUE  | R53 R42 R11         | 7807A 7804A 7870A | 79000 78000 78400 | A04 N17 D09 | - | 10-99 | 0.50 | 0.2 | 1/3/15 | - | - |
FOLLOWUP | Z098 Z048 Z768 Z718 | V671X       | -           | A63 A62 | - | 0-99  | 0.70 | 0.6 | 0/6/20 | - | - |
AGING    | R54 Z740            | 7973X       | 79400       | A28     | - | 75-99 | 0.20 | 1.5 | 4/2/20 | - | - | fatal=1
"""

# External causes (EX rows) by ICD version, for injury visits.
EXTERNAL_CAUSES = {
    10: ("W01", "W19", "W10", "X59", "W54", "V43", "W22", "Y83", "X50"),
    9: ("E8859", "E8849", "E8190", "E8889", "E9179"),
    8: ("E8859", "E8190", "E8869", "E9199"),
}

# Immediate causes of death (CATEGORY I) by ICD version.
IMMEDIATE_CAUSES = {
    10: ("J189", "I469", "I500", "J969", "A419", "R570", "I219"),
    9: ("4860X", "4275X", "4280X", "0389X"),
    8: ("48699", "42799", "42899"),
}

# Supplementary NOMESCO codes (anaesthesia, imaging) added beside an inpatient operation.
GENERIC_OPERATIONS = ("ZXD10", "ZXE00", "ZXE10", "ZXD05", "ZXC10", "TN1AA", "XJ001")
# Heart procedures: (old numeric codes, new letter codes).
HEART_PROCEDURES = (("81", "82", "11", "61", "71"), ("AN1", "AN2", "AN3", "AA1", "AP1"))
# Primary-care activity codes (CATEGORY OP0) recorded beside a health-centre visit.
PRIMARY_PROCEDURES = ("SPAT1254", "SPAT1301", "SPAT1222", "SPAT1306", "SPAT1292", "SPAT1137", "WX110")

# Main diagnoses for a visit whose only synthetic code is a side diagnosis, by ICD version.
FILLER_MAIN = {
    10: ("I10", "E119", "Z098", "M545", "J189", "R104"),
    9: ("4019X", "2500B", "7245X", "4860X"),
    8: ("40199", "25000", "72899", "48699"),
}

# Code prefixes that belong to one sex only, per code system. Frequency-table draws carry
# no sex, so these keep them away from the wrong patients (and the generator's tests use
# them to check that no patient got a code of the other sex).
SEX_SPECIFIC: dict[str, dict[str, tuple[str, ...]]] = {
    "icd10": {
        "female": ("O", "N7", "N8", "N90", "N91", "N92", "N93", "N94", "N95", "N96", "N97",
                   "N98", "C51", "C52", "C53", "C54", "C55", "C56", "C57", "C58", "D06",
                   "D25", "D26", "D27", "D28", "Z30", "Z31", "Z32", "Z33", "Z34", "Z35",
                   "Z36", "Z37", "Z39"),
        "male": ("C60", "C61", "C62", "C63", "N40", "N41", "N42", "N43", "N44", "N45",
                 "N46", "N47", "N48", "N49", "N50", "N51", "D29", "D40"),
    },
    "icd9": {
        "female": ("63", "64", "65", "66", "67", "179", "180", "181", "182", "183", "184",
                   "614", "615", "616", "617", "618", "619", "62", "V22", "V23", "V24",
                   "V25", "V27"),
        "male": ("185", "186", "187", "600", "601", "602", "603", "604", "605", "606",
                 "607", "608"),
    },
    "icd8": {
        "female": ("63", "64", "65", "66", "67", "180", "181", "182", "183", "184", "62"),
        "male": ("185", "186", "187", "600", "601", "602", "603", "604", "605", "606", "607"),
    },
    "icpc2": {"female": ("W", "X"), "male": ("Y",)},
    "topography": {"female": ("C51", "C52", "C53", "C54", "C55", "C56", "C57", "C58"),
                   "male": ("C60", "C61", "C62", "C63")},
    "nomesco": {"female": ("L", "M"), "male": ("KE", "KF", "KG")},
}


def sex_of_code(vocab: str, code: str) -> str | None:
    """'female' or 'male' when `code` of code system `vocab` belongs to one sex only."""
    rules = SEX_SPECIFIC.get(vocab)
    if rules:
        for sex, prefixes in rules.items():
            if code.startswith(prefixes):
                return sex
    return None


@dataclass(frozen=True)
class Condition:
    key: str
    icd10: tuple[str, ...]
    icd9: tuple[str, ...]
    icd8: tuple[str, ...]
    icpc2: tuple[str, ...]
    sex: str | None
    age_lo: float
    age_hi: float
    risk: float
    rate: float
    place: tuple[float, float, float]   # inpatient, outpatient, primary care
    atc: tuple[str, ...]
    kela: tuple[str, ...]
    chronic_drug: bool = False
    injury: bool = False
    heart: bool = False
    fatal: float = 0.0
    cancer: tuple[str, str] | None = None
    nomesco: tuple[str, ...] = ()
    hl: tuple[str, ...] = ()
    dental: tuple[str, ...] = ()
    extras: dict = field(default_factory=dict, compare=False)

    def codes(self, version: int) -> tuple[str, ...]:
        return {10: self.icd10, 9: self.icd9, 8: self.icd8}[version]


def _codes(cell: str) -> tuple[str, ...]:
    cell = cell.strip()
    return () if cell == "-" else tuple(cell.split())


def _parse(table: str) -> tuple[Condition, ...]:
    out = []
    for line in table.strip().splitlines():
        cells = [c.strip() for c in line.split("|")]
        key, icd10, icd9, icd8, icpc2, sex, ages, risk, rate, place, atc, kela, extra = cells
        lo, hi = (float(x) for x in ages.split("-"))
        kw: dict = {}
        tokens = extra.split()
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            # Multi-code extras (nom=A B C) run until the next key=value token.
            name, _, first = tok.partition("=")
            vals = [first] if first else []
            while i + 1 < len(tokens) and "=" not in tokens[i + 1] and tokens[i + 1] not in ("ex", "hp"):
                i += 1
                vals.append(tokens[i])
            if name == "ex":
                kw["injury"] = True
            elif name == "hp":
                kw["heart"] = True
            elif name == "fatal":
                kw["fatal"] = float(vals[0])
            elif name == "drug":
                kw["chronic_drug"] = vals[0] == "chronic"
            elif name == "canc":
                topo, morph = vals[0].split("/")
                kw["cancer"] = (topo, morph)
            elif name == "nom":
                kw["nomesco"] = tuple(vals)
            elif name == "hl":
                kw["hl"] = tuple(vals)
            elif name == "mop":
                kw["dental"] = tuple(vals)
            else:
                raise ValueError(f"built-in code table: unknown extra {tok!r} in {key}")
            i += 1
        out.append(Condition(
            key=key, icd10=_codes(icd10), icd9=_codes(icd9), icd8=_codes(icd8),
            icpc2=_codes(icpc2), sex=None if sex == "-" else sex, age_lo=lo, age_hi=hi,
            risk=float(risk), rate=float(rate),
            place=tuple(float(x) for x in place.split("/")),  # type: ignore[arg-type]
            atc=_codes(atc), kela=_codes(kela), **kw))
    return tuple(out)


CONDITIONS: tuple[Condition, ...] = _parse(_TABLE)


def vnrs_for(atc: str, n: int = 3) -> tuple[str, ...]:
    """Stable six-digit package numbers (VNR) for an ATC code.

    Derived from the code's text with a fixed arithmetic hash, so the same ATC always gets
    the same packages on every machine (Python's hash() is salted per process)."""
    h = 0
    for ch in atc:
        h = (h * 131 + ord(ch)) % 1_000_003
    return tuple(f"{(h * 7919 + i * 104_729) % 900_000 + 100_000:06d}" for i in range(n))
